"""models/onnx_export.py: the skl2onnx workaround is still needed, and does what it says."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.onnx_export import TARGET_OPSET, sklearn_to_onnx
from serving.kit import OnnxModel


def _boosted(regressor: bool) -> tuple[Any, np.ndarray]:
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]
    from sklearn.ensemble import (  # type: ignore[import-untyped]
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )

    x, y = load_iris(return_X_y=True)
    x = x.copy()
    x[::7, 2] = np.nan  # missing values: splits learn where they go, which the flags record
    estimator = HistGradientBoostingRegressor if regressor else HistGradientBoostingClassifier
    return estimator(max_iter=10, random_state=0).fit(x, y), x


@pytest.mark.parametrize("regressor", [False, True], ids=["classifier", "regressor"])
def test_skl2onnx_still_fails_on_hist_gradient_boosting_without_the_workaround(regressor: bool) -> None:
    # When this fails, a skl2onnx release converts these models itself: drop
    # `_integer_missing_flags` from models/onnx_export.py.
    from skl2onnx import to_onnx  # type: ignore[import-untyped]

    estimator, x = _boosted(regressor)

    with pytest.raises(ValueError, match="Unable to create node") as failed:
        to_onnx(estimator, x[:1].astype(np.float32), target_opset=TARGET_OPSET)

    assert "Expected an int, got a boolean" in str(failed.value.__cause__ or failed.value.__context__)


@pytest.mark.parametrize("regressor", [False, True], ids=["classifier", "regressor"])
def test_the_export_helper_converts_hist_gradient_boosting_with_missing_values(regressor: bool) -> None:
    estimator, x = _boosted(regressor)

    outputs = OnnxModel(sklearn_to_onnx(estimator, 4)).run({"X": x.astype(np.float32)})

    if regressor:
        np.testing.assert_allclose(outputs["variable"][:, 0], estimator.predict(x), rtol=1e-5)
    else:
        assert outputs["label"].tolist() == estimator.predict(x).tolist()
        np.testing.assert_allclose(outputs["probabilities"], estimator.predict_proba(x), atol=1e-5)
