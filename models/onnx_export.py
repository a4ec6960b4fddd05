"""Converting a fitted scikit-learn estimator to the ONNX bytes the server runs (training only).

    data = sklearn_to_onnx(estimator, n_features=64)

skl2onnx with `zipmap=False`, so the probabilities are a float32 tensor [N, classes]
next to the int64 labels [N] rather than a sequence of dicts, and a float32 input
[N, n_features]. The opsets are pinned, so that the bytes depend only on the estimator
and the library versions the manifest records (skl2onnx writes no timestamps or ids).
Imports skl2onnx and onnx, which the server never installs (requirements-train.txt).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.onnx_classifier import INPUT_NAME, LABEL_OUTPUT, PROBABILITIES_OUTPUT, OnnxClassifier
from serving.kit import OnnxModel

# ONNX's main domain and the classic-ML one (TreeEnsembleClassifier, LinearClassifier).
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


def sklearn_to_onnx(estimator: Any, n_features: int) -> bytes:
    """The serialized ONNX model of a fitted classifier taking rows of `n_features` float32 values."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped]

    model = to_onnx(
        estimator,
        np.zeros((1, n_features), dtype=np.float32),
        options={"zipmap": False},
        target_opset=TARGET_OPSET,
    )
    names = [output.name for output in model.graph.output]
    if [model.graph.input[0].name, *names] != [INPUT_NAME, LABEL_OUTPUT, PROBABILITIES_OUTPUT]:
        raise RuntimeError(f"skl2onnx named the graph's input and outputs {model.graph.input[0].name}, {names}")
    return bytes(model.SerializeToString())


def check_parity(name: str, data: bytes, estimator: Any, rows: np.ndarray, tolerance: float) -> None:
    """Raise RuntimeError unless the ONNX model `data` agrees with `estimator` on `rows`.

    Agreeing means the same label as `estimator.predict` on every row, in one batch and
    row by row, and probabilities within `tolerance` of `estimator.predict_proba`.
    """
    n_classes = len(estimator.classes_)
    served = OnnxClassifier(OnnxModel(data, name=name), rows.shape[1], n_classes, "a classifier")
    expected = estimator.predict_proba(rows)
    batch = served.predict_proba(rows)
    one_by_one = np.concatenate([served.predict_proba(rows[i : i + 1]) for i in range(len(rows))])
    for got in (batch, one_by_one):
        labels = estimator.classes_[np.argmax(got, axis=1)]
        wrong = np.flatnonzero(labels != estimator.predict(rows))
        if len(wrong):
            raise RuntimeError(f"{name}: ONNX Runtime's label differs from scikit-learn's on rows {wrong[:10]}")
        worst = float(np.max(np.abs(got - expected)))
        if worst > tolerance:
            raise RuntimeError(f"{name}: probabilities differ from scikit-learn's by {worst:.3g} > {tolerance:g}")
