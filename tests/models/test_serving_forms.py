"""The ONNX serving forms: scikit-learn's labels and, within float32 tolerance, its probabilities.

The stated tolerances are `models.digits.model.PROBABILITY_TOLERANCE` and
`models.iris.model.PROBABILITY_TOLERANCE`: ONNX Runtime computes in float32 where
scikit-learn uses float64.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.digits import model as digits_model
from models.digits import train as digits_train
from models.iris import model as iris_model
from models.iris import train as iris_train
from serving import kit
from serving.kit import ArtifactError
from tests.servers import run_python

DIGITS_TOLERANCE = digits_model.PROBABILITY_TOLERANCE
IRIS_TOLERANCE = iris_model.PROBABILITY_TOLERANCE


@pytest.fixture(scope="module")
def digits_estimator() -> Any:
    return digits_model.load_estimator()


@pytest.fixture(scope="module")
def iris_estimator() -> Any:
    return iris_model.load_estimator()


@pytest.fixture(scope="module", params=["held-out", "load_digits"])
def digit_rows(request: pytest.FixtureRequest) -> np.ndarray:
    """The 450 held-out images, or all 1797 `load_digits` images, as 64 features."""
    if request.param == "held-out":
        return digits_train.split()[2].features
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    return load_digits(return_X_y=True)[0]


@pytest.fixture(scope="module", params=["held-out", "load_iris"])
def iris_rows(request: pytest.FixtureRequest) -> np.ndarray:
    """The 45 held-out flowers, or all 150 `load_iris` flowers."""
    if request.param == "held-out":
        return iris_train.split()[2].features
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]

    return load_iris().data


def _batches(rows: np.ndarray, size: int | None) -> Iterator[np.ndarray]:
    step = size or len(rows)
    return (rows[start : start + step] for start in range(0, len(rows), step))


BATCH_SIZES = [pytest.param(1, id="batch-1"), pytest.param(7, id="batch-7"), pytest.param(None, id="one-batch")]


def _assert_parity(got: np.ndarray, estimator: Any, rows: np.ndarray, tolerance: float) -> None:
    """The same label as scikit-learn on every row, and probabilities within `tolerance`."""
    expected = estimator.predict_proba(rows)
    np.testing.assert_array_equal(estimator.classes_[np.argmax(got, axis=1)], estimator.predict(rows))
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)
    assert got.dtype == np.float32


# --- parity with scikit-learn --------------------------------------------------------


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_the_served_forest_agrees_with_scikit_learn(
    digits_model: Any, digits_estimator: Any, digit_rows: np.ndarray, size: int | None
) -> None:
    got = np.concatenate([digits_model.predict_proba(batch) for batch in _batches(digit_rows, size)])
    _assert_parity(got, digits_estimator, digit_rows, DIGITS_TOLERANCE)


def test_every_threshold_of_the_forest_is_exact_in_float32(digits_estimator: Any) -> None:
    # ONNX's TreeEnsembleClassifier stores thresholds as float32; scikit-learn compares the
    # float32 feature with a float64 threshold. Equal paths for every input need both equal.
    thresholds = np.concatenate([e.tree_.threshold[e.tree_.children_left != -1] for e in digits_estimator.estimators_])
    np.testing.assert_array_equal(thresholds.astype(np.float32).astype(np.float64), thresholds)


def _rows_at_thresholds(estimator: Any, base: np.ndarray) -> np.ndarray:
    """`base` rows with one feature set at, just below and just above each (feature, threshold) of the forest."""
    pairs = {
        (int(f), float(t))
        for e in estimator.estimators_
        for f, t, left in zip(e.tree_.feature, e.tree_.threshold, e.tree_.children_left, strict=True)
        if left != -1
    }
    rows = []
    for feature, threshold in sorted(pairs):
        at = np.float32(threshold)
        for value in (at, np.nextafter(at, np.float32(-np.inf)), np.nextafter(at, np.float32(np.inf))):
            row = base.copy()
            row[:, feature] = value
            rows.append(row)
    return np.concatenate(rows).astype(np.float32)


def test_rows_at_and_beside_every_split_threshold_take_scikit_learns_paths(
    digits_model: Any, digits_estimator: Any
) -> None:
    base = digits_train.split()[2].features[:3]
    rows = _rows_at_thresholds(digits_estimator, base)
    assert len(rows) > 1000
    got = digits_model.predict_proba(rows)
    expected = digits_estimator.predict_proba(rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=DIGITS_TOLERANCE)
    # The labels agree except where scikit-learn's two best probabilities tie within the
    # float32 tolerance (then rounding may pick either); such rows are counted, and rare.
    top_two = np.sort(expected, axis=1)[:, -2:]
    tie = top_two[:, 1] - top_two[:, 0] <= 2 * DIGITS_TOLERANCE
    differ = np.argmax(got, axis=1) != np.argmax(expected, axis=1)
    assert not np.any(differ & ~tie)


def test_the_digits_handler_results_are_the_served_forests(digits_model: Any, digits_estimator: Any) -> None:
    rows = digits_train.split()[2].features
    results = digits_model.predict_features(rows)
    assert [r["digit"] for r in results] == list(digits_estimator.predict(rows))
    # JSON numbers at float32's precision: each reads back as exactly the float32 the graph gave.
    served = np.asarray([r["probabilities"] for r in results], dtype=np.float32)
    np.testing.assert_array_equal(served, digits_model.predict_proba(rows))
    assert all(type(p) is float for r in results for p in r["probabilities"])


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_the_served_iris_pipeline_agrees_with_scikit_learn(
    iris_model: Any, iris_estimator: Any, iris_rows: np.ndarray, size: int | None
) -> None:
    got = np.concatenate([iris_model.predict_proba(batch) for batch in _batches(iris_rows, size)])
    _assert_parity(got, iris_estimator, iris_rows, IRIS_TOLERANCE)


@pytest.mark.parametrize(
    ("module_name", "rows", "message"),
    [
        pytest.param("handlers.digits", np.full((1, 64), np.nan), "finite", id="digits-nan"),
        pytest.param("handlers.digits", np.full((1, 64), 1e39), "finite", id="digits-float32-overflow"),
        pytest.param("handlers.digits", np.zeros((2, 63)), "rows of 64 features", id="digits-shape"),
        pytest.param("handlers.iris", np.full((1, 4), np.inf), "finite", id="iris-inf"),
        pytest.param("handlers.iris", np.zeros(4), "rows of 4 features", id="iris-one-dimensional"),
    ],
)
def test_unusable_rows_raise_value_error(
    load_model: Callable[[str], Any], module_name: str, rows: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_model(module_name).predict_proba(rows)


def test_no_rows_give_no_probabilities(digits_model: Any) -> None:
    assert digits_model.predict_proba(np.zeros((0, 64))).shape == (0, 10)
    assert digits_model.predict([]) == []


# --- serving without scikit-learn ----------------------------------------------------


# Training and conversion packages: never needed to serve (requirements-train.txt).
NOT_FOR_SERVING = ("sklearn", "skops", "scipy", "joblib", "skl2onnx", "onnx", "torch", "transformers")

FRESH_SERVER = """
import json, shutil, sys, tempfile
from pathlib import Path
from serving.app import create_app
from serving.config.settings import Settings
from serving.runtime.handlers import load_handler

# Every handler of the project but those that declare they need torch (SentenceEmbedding,
# until it runs on ONNX Runtime too): the server they make must never import the rest.
handlers = Path(tempfile.mkdtemp())
for path in sorted(Path("handlers").glob("*.py")):
    if "torch" not in load_handler(path).requires:
        shutil.copy(path, handlers / path.name)
app = create_app(Settings(handlers_dir=handlers, model_loading="eager", metrics=False))
client = app.test_client()
served = []
for model in client.get("/v1/models").get_json()["models"]:
    example = model["input_schema"]["examples"][0]
    assert client.post(f"/v1/{model['name']}", json=example).status_code == 200, model["name"]
    served.append(model["name"])
print(json.dumps({"served": sorted(served), "imported": sorted(m for m in sys.argv[1:] if m in sys.modules)}))
"""


@pytest.mark.e2e
def test_a_fresh_server_imports_no_training_package() -> None:
    result = run_python(FRESH_SERVER, timeout=180, args=NOT_FOR_SERVING)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"Digits", "Iris"} <= set(report["served"])
    assert report["imported"] == []


# --- serving forms that are not the model's ------------------------------------------


def _install(module: Any, directory: Path, data: bytes) -> None:
    """The model's files in `directory`, with `data` as its serving form, re-signed in the manifest.

    Re-signing is what someone crafting a file would do: the sha256 check passes, so the
    graph's own checks are all that stands between the file and the server.
    """
    for name in (module.ARTIFACT_FILE, kit.MANIFEST_NAME):
        shutil.copy(module.ARTIFACT_DIR / name, directory / name)
    (directory / module.SERVING_FILE).write_bytes(data)
    manifest_path = directory / kit.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["serving"].update(sha256=kit.sha256_hex(data), size_bytes=len(data))
    manifest_path.write_text(json.dumps(manifest))


def _serving_bytes(module: Any) -> bytes:
    return bytes((module.ARTIFACT_DIR / module.SERVING_FILE).read_bytes())


@pytest.mark.parametrize(
    ("module", "load", "data", "message"),
    [
        pytest.param(
            digits_model,
            digits_model.DigitClassifier.load,
            lambda: _serving_bytes(iris_model),
            r"not a classifier of 8x8 digit images \(found X: tensor\(float\) \[\?, 4\]",
            id="digits-given-iris",
        ),
        pytest.param(
            iris_model,
            iris_model.IrisClassifier.load,
            lambda: _serving_bytes(digits_model),
            r"not an iris classifier \(found X: tensor\(float\) \[\?, 64\]",
            id="iris-given-digits",
        ),
        pytest.param(
            digits_model,
            digits_model.DigitClassifier.load,
            lambda: b"not an onnx model",
            "ONNX Runtime cannot load this model",
            id="not-onnx",
        ),
        pytest.param(
            iris_model,
            iris_model.IrisClassifier.load,
            lambda: _serving_bytes(iris_model)[:300],
            "ONNX Runtime cannot load this model",
            id="truncated",
        ),
    ],
)
def test_a_serving_form_that_is_not_the_models_is_refused_naming_it(
    module: Any, load: Callable[[Path], Any], data: Callable[[], bytes], message: str, tmp_path: Path
) -> None:
    _install(module, tmp_path, data())
    with pytest.raises(ArtifactError, match=rf"^{module.SERVING_FILE}: {message}"):
        load(tmp_path)


def test_the_committed_serving_forms_load_when_reinstalled(tmp_path: Path) -> None:
    # The table's baseline: the same bytes, re-signed, load.
    _install(digits_model, tmp_path, _serving_bytes(digits_model))
    assert digits_model.DigitClassifier.load(tmp_path).onnx.output("probabilities").shape == (None, 10)
