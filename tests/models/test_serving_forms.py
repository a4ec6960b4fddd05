"""The numpy serving forms: bit for bit scikit-learn's probabilities, and refused when inconsistent."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import artifacts
from models.artifacts import ArtifactError
from models.digits import model as digits_model
from models.digits import train as digits_train
from models.digits.forest import CompiledForest
from models.iris import model as iris_model
from models.iris import train as iris_train
from tests.servers import run_python

Arrays = dict[str, np.ndarray]


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

# --- equality with scikit-learn ------------------------------------------------------


def test_the_forest_answers_each_row_the_same_in_any_batch(digits_estimator: Any) -> None:
    # Lets the next test compare with one scikit-learn call per data set instead of 1797
    # calls of 6 ms: a tree's answer for a row does not depend on the other rows.
    rows = digits_train.split()[2].features[:70]
    whole = digits_estimator.predict_proba(rows)
    for size in (1, 7):
        np.testing.assert_array_equal(
            np.concatenate([digits_estimator.predict_proba(b) for b in _batches(rows, size)]), whole
        )


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_the_served_forest_equals_scikit_learn_bit_for_bit(
    digits_model: Any, digits_estimator: Any, digit_rows: np.ndarray, size: int | None
) -> None:
    expected = digits_estimator.predict_proba(digit_rows)
    got = np.concatenate([digits_model.forest.predict_proba(batch) for batch in _batches(digit_rows, size)])
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64


def test_the_digits_handler_results_are_scikit_learns(digits_model: Any, digits_estimator: Any) -> None:
    rows = digits_train.split()[2].features
    expected = digits_estimator.predict_proba(rows)
    results = digits_model.predict_features(rows)
    assert [r["digit"] for r in results] == list(np.argmax(expected, axis=1))
    assert [r["probabilities"] for r in results] == expected.tolist()


@pytest.mark.parametrize("size", BATCH_SIZES)
def test_the_served_iris_pipeline_equals_scikit_learn_bit_for_bit(
    iris_model: Any, iris_estimator: Any, iris_rows: np.ndarray, size: int | None
) -> None:
    # Compared batch by batch: BLAS may round a matrix product differently by its shape.
    for batch in _batches(iris_rows, size):
        np.testing.assert_array_equal(iris_model.pipeline.predict_proba(batch), iris_estimator.predict_proba(batch))


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
    served = load_model(module_name)
    compiled = served.forest if module_name == "handlers.digits" else served.pipeline
    with pytest.raises(ValueError, match=message):
        compiled.predict_proba(rows)


def test_the_forest_depth_is_computed_from_the_trees(digits_model: Any, digits_estimator: Any) -> None:
    assert digits_model.forest.depth == max(e.tree_.max_depth for e in digits_estimator.estimators_)
    assert digits_model.forest.n_trees == len(digits_estimator.estimators_) == 200


# --- serving without scikit-learn ----------------------------------------------------


@pytest.mark.e2e
def test_setting_up_and_predicting_imports_neither_scikit_learn_nor_skops() -> None:
    code = (
        "import json, sys\n"
        "import handlers.digits as digits, handlers.iris as iris\n"
        "for module in (digits, iris):\n"
        "    model = module.setup()\n"
        "    module.predict_batch(model, module.INPUT_SCHEMA['examples'])\n"
        "print(json.dumps([m for m in ('sklearn', 'skops', 'scipy', 'joblib') if m in sys.modules]))\n"
    )
    result = run_python(code, timeout=120)
    assert json.loads(result.stdout) == []


# --- inconsistent serving forms ------------------------------------------------------


def _committed(module: Any) -> Arrays:
    with np.load(module.ARTIFACT_DIR / module.SERVING_FILE, allow_pickle=False) as npz:
        return {name: npz[name].copy() for name in npz.files}


def _install(module: Any, directory: Path, data: bytes) -> None:
    """The model's files in `directory`, with `data` as its serving form, re-signed in the manifest.

    Re-signing is what someone crafting a file would do: the sha256 check passes, so the
    consistency checks are all that stands between the file and the server.
    """
    for name in (module.ARTIFACT_FILE, artifacts.MANIFEST_NAME):
        shutil.copy(module.ARTIFACT_DIR / name, directory / name)
    (directory / module.SERVING_FILE).write_bytes(data)
    manifest_path = directory / artifacts.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["serving"].update(sha256=artifacts.sha256_hex(data), size_bytes=len(data))
    manifest_path.write_text(json.dumps(manifest))


def _raw_npz(members: dict[str, Any], *, fortran: bool = False) -> bytes:
    """A zip of .npy members written as given: object arrays pickled, Fortran order kept, bytes as they are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in members.items():
            member = io.BytesIO()
            if isinstance(array, bytes):
                member.write(array)
            else:
                np.lib.format.write_array(member, np.asfortranarray(array) if fortran else array, allow_pickle=True)
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


def _header_claims(a: Arrays, name: str, shape: tuple[int, ...]) -> bytes:
    """The arrays with `name`'s header declaring `shape`, its data unchanged."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": a[name].dtype.str, "fortran_order": False, "shape": shape})
    return _raw_npz({**a, name: member.getvalue() + a[name].tobytes()})


def _first_internal(a: Arrays) -> int:
    return int(np.flatnonzero(a["threshold"] != -np.inf)[0])


def _first_leaf(a: Arrays) -> int:
    return int(np.flatnonzero(a["threshold"] == -np.inf)[0])


def _set(a: Arrays, name: str, index: Any, value: Any) -> Arrays:
    a[name][index] = value
    return a


def _share_a_child(a: Arrays) -> Arrays:
    # Node 0's right child becomes another internal node's right child: a node with two
    # parents (and one with none). Every index stays in range, so only the tree check sees it.
    internal = np.flatnonzero(a["threshold"] != -np.inf)
    other = int(internal[(internal > 0) & (a["right"][internal] > a["right"][0])][0])
    a["right"][0] = a["right"][other]
    return a


# (damage to the committed arrays -> bytes of the new file, expected message)
DIGITS_DAMAGE: list[Any] = [
    pytest.param(
        lambda a: _set(a, "feature", _first_internal(a), 64), "feature is outside 0..63", id="feature-too-big"
    ),
    pytest.param(lambda a: _set(a, "feature", _first_leaf(a), -1), "feature is outside", id="feature-negative"),
    pytest.param(lambda a: _set(a, "right", 0, 0), "children are out of range", id="right-points-back"),
    pytest.param(lambda a: _set(a, "right", 0, 1), "children are out of range", id="right-is-the-left-child"),
    pytest.param(lambda a: _set(a, "right", 0, len(a["right"])), "children are out of range", id="right-past-end"),
    pytest.param(lambda a: _set(a, "right", _first_leaf(a), 0), "leaf's right child is not itself", id="leaf-leaves"),
    pytest.param(lambda a: _set(a, "threshold", 0, np.nan), "threshold is not a finite", id="threshold-nan"),
    pytest.param(lambda a: _set(a, "threshold", 0, np.inf), "threshold is not a finite", id="threshold-inf"),
    pytest.param(
        lambda a: _set(a, "threshold", len(a["threshold"]) - 1, 0.5),
        "children are out of range",
        id="last-node-internal",
    ),
    pytest.param(lambda a: _set(a, "proba", _first_leaf(a), 0.2), "not a distribution", id="proba-sums-to-2"),
    pytest.param(lambda a: _set(a, "proba", (0, 0), np.nan), "not a distribution", id="proba-nan"),
    pytest.param(lambda a: _set(a, "proba", (0, slice(0, 2)), [-1.0, 2.0]), "not a distribution", id="proba-negative"),
    pytest.param(lambda a: _set(a, "roots", 1, len(a["right"])), "root is out of range", id="root-past-end"),
    pytest.param(lambda a: _set(a, "roots", 1, 0), "do not form trees", id="root-twice"),
    pytest.param(_share_a_child, "do not form trees", id="node-with-two-parents"),
    pytest.param(lambda a: {**a, "roots": a["roots"][:0]}, "no classes or no trees", id="no-trees"),
    pytest.param(lambda a: {**a, "threshold": a["threshold"][:-1]}, "describe the same nodes", id="threshold-short"),
    pytest.param(lambda a: {**a, "proba": a["proba"][:, :9].copy()}, "not a distribution", id="a-class-dropped"),
    pytest.param(
        lambda a: {**a, "proba": np.hstack([a["proba"], np.zeros((len(a["proba"]), 1))])},
        "not a classifier of 8x8 digit images",
        id="eleven-classes",
    ),
]
DIGITS_BAD_FILES: list[Any] = [
    pytest.param(
        lambda a: _raw_npz({**a, "feature": a["feature"].astype(np.int64)}),
        r"feature: expected .* <i4",
        id="feature-int64",
    ),
    pytest.param(
        lambda a: _raw_npz({**a, "threshold": a["threshold"].astype(np.float32)}),
        r"threshold: expected .* <f8",
        id="threshold-float32",
    ),
    pytest.param(
        lambda a: _raw_npz({**a, "roots": np.array([0], dtype=object)}),
        r"roots: expected .* <i4",
        id="pickled-object-array",
    ),
    pytest.param(lambda a: _raw_npz(a, fortran=True), r"proba: expected a C-ordered", id="fortran-order"),
    pytest.param(
        lambda a: _raw_npz({k: v for k, v in a.items() if k != "roots"}), "holds members", id="member-missing"
    ),
    pytest.param(lambda a: _raw_npz({**a, "extra": np.zeros(1)}), "holds members", id="member-extra"),
    pytest.param(lambda a: _header_claims(a, "roots", (10**9,)), "does not fit the file", id="header-claims-gigabytes"),
    pytest.param(lambda a: _header_claims(a, "roots", (100,)), "does not fit the file", id="header-claims-more"),
    pytest.param(lambda a: b"not a zip file at all", "not a readable serving form", id="not-a-zip"),
]


@pytest.mark.parametrize(("damage", "message"), DIGITS_DAMAGE)
def test_inconsistent_forest_arrays_are_refused(
    damage: Callable[[Arrays], Arrays], message: str, tmp_path: Path
) -> None:
    _install(digits_model, tmp_path, artifacts.canonical_npz(damage(_committed(digits_model))))
    with pytest.raises(ArtifactError, match=rf"^digits-forest\.npz: .*{message}"):
        digits_model.DigitClassifier.load(tmp_path)


@pytest.mark.parametrize(("damage", "message"), DIGITS_BAD_FILES)
def test_malformed_forest_files_are_refused(damage: Callable[[Arrays], bytes], message: str, tmp_path: Path) -> None:
    _install(digits_model, tmp_path, damage(_committed(digits_model)))
    with pytest.raises(ArtifactError, match=rf"digits-forest\.npz: .*{message}"):
        digits_model.DigitClassifier.load(tmp_path)


IRIS_DAMAGE: list[Any] = [
    pytest.param(lambda a: _set(a, "scale", 2, 0.0), "scale is not positive", id="scale-zero"),
    pytest.param(lambda a: _set(a, "scale", 0, -1.0), "scale is not positive", id="scale-negative"),
    pytest.param(lambda a: _set(a, "coef", (1, 1), np.nan), "not a finite number", id="coef-nan"),
    pytest.param(lambda a: _set(a, "intercept", 0, np.inf), "not a finite number", id="intercept-inf"),
    pytest.param(lambda a: {**a, "mean": np.zeros(5)}, "do not describe 4 features", id="mean-five-features"),
    pytest.param(lambda a: {**a, "coef": a["coef"].T.copy()}, "do not describe 4 features", id="coef-transposed"),
    pytest.param(lambda a: {**a, "intercept": a["intercept"][:2].copy()}, "do not describe", id="two-intercepts"),
    pytest.param(
        lambda a: {**a, "intercept": np.zeros(4), "coef": np.zeros((4, 4))}, "not an iris classifier", id="four-classes"
    ),
]


@pytest.mark.parametrize(("damage", "message"), IRIS_DAMAGE)
def test_inconsistent_iris_arrays_are_refused(damage: Callable[[Arrays], Arrays], message: str, tmp_path: Path) -> None:
    _install(iris_model, tmp_path, artifacts.canonical_npz(damage(_committed(iris_model))))
    with pytest.raises(ArtifactError, match=rf"iris-pipeline\.npz: .*{message}"):
        iris_model.IrisClassifier.load(tmp_path)


def test_the_committed_arrays_pass_unchanged(tmp_path: Path) -> None:
    # The damage tables' baseline: re-writing the committed arrays loads.
    _install(digits_model, tmp_path, artifacts.canonical_npz(_committed(digits_model)))
    assert digits_model.DigitClassifier.load(tmp_path).forest.n_trees == 200
    _install(iris_model, tmp_path, artifacts.canonical_npz(_committed(iris_model)))
    assert iris_model.IrisClassifier.load(tmp_path).pipeline.n_classes == 3


def test_a_forest_of_the_wrong_width_is_not_a_digit_classifier() -> None:
    arrays = _committed(digits_model)
    forest = CompiledForest(arrays, 65, source="x.npz")  # consistent, but for 65 features
    with pytest.raises(ArtifactError, match=r"x\.npz: not a classifier of 8x8 digit images"):
        digits_model.DigitClassifier(forest)
