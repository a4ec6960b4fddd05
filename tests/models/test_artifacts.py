"""Artifact verification on load (skops files and serving forms), and the reproducibility of training.

The serving forms' checks and their agreement with scikit-learn are in
test_serving_forms.py.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import artifact_writer
from models.digits import model as digits_model
from models.digits import train as digits_train
from models.iris import model as iris_model
from models.iris import train as iris_train
from serving import kit
from serving.kit import ArtifactError, read_manifest
from tests.servers import PROJECT_ROOT

MODELS: dict[str, tuple[types.ModuleType, types.ModuleType]] = {
    "iris": (iris_model, iris_train),
    "digits": (digits_model, digits_train),
}
# Each model's two files and how each is loaded: the served form by the model class, the
# skops file by `load_estimator` (training, tests, the benchmark's baseline).
FILES: dict[str, tuple[str, str, Callable[[Path], Any]]] = {
    "iris-served": ("iris", iris_model.SERVING_FILE, iris_model.IrisClassifier.load),
    "iris-skops": ("iris", iris_model.ARTIFACT_FILE, iris_model.load_estimator),
    "digits-served": ("digits", digits_model.SERVING_FILE, digits_model.DigitClassifier.load),
    "digits-skops": ("digits", digits_model.ARTIFACT_FILE, digits_model.load_estimator),
}


def _copy_model(which: str, directory: Path) -> Path:
    module = MODELS[which][0]
    for name in (module.ARTIFACT_FILE, module.SERVING_FILE, kit.MANIFEST_NAME):
        shutil.copy(module.ARTIFACT_DIR / name, directory / name)
    return directory


@pytest.fixture(params=list(FILES))
def copied(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Callable[[Path], Any], Path]:
    """One of a model's files, its loader, and a scratch copy of the model's directory."""
    which, filename, load = FILES[request.param]
    return filename, load, _copy_model(which, tmp_path)


@pytest.mark.parametrize("which", list(MODELS))
def test_committed_artifacts_match_their_manifests(which: str) -> None:
    module = MODELS[which][0]
    manifest = read_manifest(module.ARTIFACT_DIR / kit.MANIFEST_NAME)
    assert manifest.serving is not None
    for filename, sha256, size in [
        (module.ARTIFACT_FILE, manifest.sha256, manifest.size_bytes),
        (module.SERVING_FILE, manifest.serving.sha256, manifest.serving.size_bytes),
    ]:
        data = (module.ARTIFACT_DIR / filename).read_bytes()
        assert sha256 == kit.sha256_hex(data)
        assert size == len(data)
    assert manifest.serving.artifact == module.SERVING_FILE
    assert set(manifest.trusted_types) <= set(module.TRUSTED_TYPES)
    assert module.load_estimator() is not None


def test_a_flipped_byte_is_refused_naming_the_file(copied: tuple[str, Callable[[Path], Any], Path]) -> None:
    filename, load, directory = copied
    path = directory / filename
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{re.escape(filename)}: sha256 \w+… does not match the manifest's"):
        load(directory)


def test_a_manifest_with_another_sha_is_refused(copied: tuple[str, Callable[[Path], Any], Path]) -> None:
    filename, load, directory = copied
    manifest_path = directory / kit.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["serving"] if manifest["serving"]["artifact"] == filename else manifest
    entry["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match the manifest's 0000000000000000…"):
        load(directory)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda d, f: (d / f).unlink(), "artifact not found", id="artifact-missing"),
        pytest.param(lambda d, f: (d / "artifact.json").unlink(), "manifest not found", id="manifest-missing"),
        pytest.param(lambda d, f: (d / "artifact.json").write_text("{"), "manifest is unreadable", id="manifest-bad"),
        pytest.param(lambda d, f: (d / "artifact.json").write_text("{}"), "manifest lacks", id="manifest-empty"),
        pytest.param(
            lambda d, f: _edit_manifest(d, serving=[]), "manifest lacks or mistypes", id="manifest-serving-mistyped"
        ),
    ],
)
def test_missing_or_broken_files_are_refused(
    copied: tuple[str, Callable[[Path], Any], Path], damage: Callable[[Path, str], object], message: str
) -> None:
    filename, load, directory = copied
    damage(directory, filename)
    with pytest.raises(ArtifactError, match=message):
        load(directory)


def _edit_manifest(directory: Path, **changes: Any) -> None:
    path = directory / kit.MANIFEST_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("which", list(MODELS))
def test_a_manifest_from_before_serving_forms_still_loads_the_estimator_only(which: str, tmp_path: Path) -> None:
    module = MODELS[which][0]
    manifest = json.loads((module.ARTIFACT_DIR / kit.MANIFEST_NAME).read_text())
    del manifest["serving"]
    _copy_model(which, tmp_path)
    (tmp_path / kit.MANIFEST_NAME).write_text(json.dumps(manifest))
    assert read_manifest(tmp_path / kit.MANIFEST_NAME).serving is None
    assert module.load_estimator(tmp_path) is not None
    served = FILES[f"{which}-served"][2]
    with pytest.raises(ArtifactError, match=rf"{re.escape(module.SERVING_FILE)}: the manifest records no serving form"):
        served(tmp_path)


@pytest.mark.parametrize(
    ("load", "file_pattern"),
    [
        pytest.param(iris_model.IrisClassifier.load, r"digits\.onnx", id="served"),
        pytest.param(iris_model.load_estimator, r"digits\.skops", id="skops"),
    ],
)
def test_a_manifest_for_another_file_is_refused(load: Callable[[Path], Any], file_pattern: str, tmp_path: Path) -> None:
    for name in (iris_model.ARTIFACT_FILE, iris_model.SERVING_FILE):
        shutil.copy(iris_model.ARTIFACT_DIR / name, tmp_path / name)
    shutil.copy(digits_model.ARTIFACT_DIR / kit.MANIFEST_NAME, tmp_path / kit.MANIFEST_NAME)
    with pytest.raises(ArtifactError, match=rf"describes '{file_pattern}'"):
        load(tmp_path)


def test_a_type_outside_the_allow_list_is_refused() -> None:
    # The digits forest holds sklearn Trees; without them on the allow-list it must not load.
    with pytest.raises(ArtifactError, match=r"digits\.skops: holds types outside.*sklearn\.tree\._tree\.Tree"):
        kit.load_artifact(digits_model.ARTIFACT_DIR, digits_model.ARTIFACT_FILE, trusted_types=())


@pytest.mark.parametrize("which", list(MODELS))
def test_errors_name_the_artifact_relative_to_the_project(which: str) -> None:
    module = MODELS[which][0]
    for filename in (module.ARTIFACT_FILE, module.SERVING_FILE):
        assert kit.display_path(module.ARTIFACT_DIR / filename) == f"models/{which}/{filename}"
    assert kit.display_path(Path("/somewhere/else/x.skops")) == "x.skops"


def _fake_forest(feature: list[int], left: list[int], right: list[int]) -> Any:
    """A stand-in for an unpickled RandomForestClassifier with one tree."""
    value = np.zeros((len(feature), 1, 10))
    value[:, 0, 0] = 1.0
    tree = types.SimpleNamespace(
        node_count=len(feature),
        n_outputs=1,
        children_left=np.array(left),
        children_right=np.array(right),
        feature=np.array(feature),
        threshold=np.array([0.5 if f >= 0 else -2.0 for f in feature]),
        value=value,
    )
    return types.SimpleNamespace(
        classes_=np.arange(10), n_features_in_=64, estimators_=[types.SimpleNamespace(tree_=tree)]
    )


@pytest.mark.parametrize(
    ("feature", "left", "right", "message"),
    [
        pytest.param([70, -2, -2], [1, -1, -1], [2, -1, -1], "feature is outside", id="feature-out-of-range"),
        pytest.param([3, -2, -2], [1, -1, -1], [9, -1, -1], "children are out of range", id="child-out-of-range"),
        pytest.param([3, -2, -2], [0, -1, -1], [2, -1, -1], "children are out of range", id="child-points-back"),
        pytest.param([3, -2, -2], [1, -1, -1], [1, -1, -1], "children are out of range", id="both-children-one"),
        pytest.param([3, -2, -2], [1, -1, -1], [-1, -1, -1], "children are out of range", id="half-a-leaf"),
    ],
)
def test_an_estimator_with_out_of_range_node_indices_is_refused(
    monkeypatch: pytest.MonkeyPatch, feature: list[int], left: list[int], right: list[int], message: str
) -> None:
    # skops would hand these to scikit-learn, whose Cython follows them without bounds checks.
    monkeypatch.setattr(digits_model, "load_artifact", lambda *_: _fake_forest(feature, left, right))
    with pytest.raises(ArtifactError, match=rf"digits\.skops: .*{message}"):
        digits_model.load_estimator()


def test_a_consistent_estimator_passes_the_bounds_check(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_forest([3, -2, -2], [1, -1, -1], [2, -1, -1])
    monkeypatch.setattr(digits_model, "load_artifact", lambda *_: fake)
    assert digits_model.load_estimator() is fake


# --- reproducibility -----------------------------------------------------------------


def test_canonical_dumps_is_deterministic_and_loadable() -> None:
    fitted = iris_train.fit(progress=False)
    first, second = artifact_writer.canonical_dumps(fitted.pipeline), artifact_writer.canonical_dumps(fitted.pipeline)
    assert first == second
    import skops.io  # type: ignore[import-untyped]

    reloaded = skops.io.loads(first, trusted=[])
    features = fitted.held_out.features
    np.testing.assert_array_equal(reloaded.predict_proba(features), fitted.pipeline.predict_proba(features))


def test_warm_started_forest_equals_one_fit() -> None:
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    x_train, y_train, _ = digits_train.split()
    grown = digits_train.fit(progress=False).forest
    once = RandomForestClassifier(n_estimators=digits_train.N_ESTIMATORS, random_state=digits_train.SEED, n_jobs=1)
    once.fit(x_train, y_train)
    assert artifact_writer.canonical_dumps(grown) == artifact_writer.canonical_dumps(once)


# The OpenBLAS kernels the committed artifacts were trained with (models/README.md).
TRAINING_BLAS_CORETYPE = "Haswell"


@pytest.fixture(scope="module", params=list(MODELS))
def retrained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A model retrained with its train command's defaults into a scratch directory."""
    which: str = request.param
    directory = tmp_path_factory.mktemp(f"retrained-{which}")
    # In a process of its own, with OpenBLAS held to one kernel set: it otherwise picks
    # kernels by CPU, and Iris's L-BFGS fit then differs in the last bits between machines.
    command = [sys.executable, "-m", f"models.{which}.train", "--output-dir", str(directory)]
    env = {**os.environ, "OPENBLAS_CORETYPE": TRAINING_BLAS_CORETYPE}
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return which, directory


@pytest.mark.e2e  # retrains in a process of its own (`retrained`)
def test_retraining_gives_the_committed_held_out_predictions(retrained: tuple[str, Path]) -> None:
    """The claim in models/README.md that holds whatever the library versions."""
    which, directory = retrained
    module, train = MODELS[which]
    committed = read_manifest(module.ARTIFACT_DIR / kit.MANIFEST_NAME)
    assert read_manifest(directory / kit.MANIFEST_NAME).held_out_accuracy == committed.held_out_accuracy
    _, _, held_out = train.split()
    old, new = module.load_estimator(module.ARTIFACT_DIR), module.load_estimator(directory)
    np.testing.assert_array_equal(old.predict(held_out.features), new.predict(held_out.features))
    served = FILES[f"{which}-served"][2](directory)
    np.testing.assert_allclose(
        served.predict_proba(held_out.features),
        new.predict_proba(held_out.features),
        rtol=0,
        atol=module.PROBABILITY_TOLERANCE,
    )


@pytest.mark.e2e  # retrains in a process of its own (`retrained`)
def test_retraining_with_the_manifest_versions_gives_the_same_bytes(retrained: tuple[str, Path]) -> None:
    """The bit-for-bit claim in models/README.md: it needs the library versions recorded.

    The interpreter is not one of them: the model files must come out the same on 3.11
    and 3.13 (both suites run this), and the manifest then differs only in the Python it
    records, which is provenance, not an input to the bytes.
    """
    which, directory = retrained
    module = MODELS[which][0]
    committed_path = module.ARTIFACT_DIR / kit.MANIFEST_NAME
    committed = read_manifest(committed_path)
    installed = {k: v for k, v in artifact_writer.library_versions().items() if k != "python"}
    recorded = {k: v for k, v in committed.versions.items() if k != "python"}
    if installed != recorded:
        pytest.skip(f"library versions differ from {module.ARTIFACT_FILE}'s manifest: {installed} != {recorded}")
    for filename in (module.ARTIFACT_FILE, module.SERVING_FILE):
        assert (directory / filename).read_bytes() == (module.ARTIFACT_DIR / filename).read_bytes(), filename
    new_manifest = json.loads((directory / kit.MANIFEST_NAME).read_text())
    old_manifest = json.loads(committed_path.read_text())
    assert new_manifest["versions"].pop("python") == platform.python_version()
    old_manifest["versions"].pop("python")
    assert new_manifest == old_manifest


def test_onnx_conversion_is_deterministic() -> None:
    from models.onnx_export import sklearn_to_onnx

    pipeline = iris_model.load_estimator()
    assert sklearn_to_onnx(pipeline, 4) == sklearn_to_onnx(pipeline, 4)


def test_train_command_reports_the_held_out_accuracy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert iris_train.main(["--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"held-out accuracy: [01]\.\d{4} on 45 flowers", out)
    assert re.search(r"iris\.skops \(\d+ bytes, sha256 [0-9a-f]{64}\)", out)
    assert re.search(r"iris\.onnx \(\d+ bytes, sha256 [0-9a-f]{64}\)", out)
