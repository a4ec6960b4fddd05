"""Artifact verification on load, and the reproducibility of training."""

from __future__ import annotations

import json
import re
import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models import artifacts
from models.artifacts import ArtifactError, read_manifest
from models.digits import model as digits_model
from models.digits import train as digits_train
from models.iris import model as iris_model
from models.iris import train as iris_train

MODELS: dict[str, tuple[types.ModuleType, types.ModuleType, Callable[[Path], Any]]] = {
    "iris": (iris_model, iris_train, iris_model.IrisClassifier.load),
    "digits": (digits_model, digits_train, digits_model.DigitClassifier.load),
}


@pytest.fixture(params=list(MODELS))
def copied(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A model's committed artifact and manifest, copied to a scratch directory."""
    module = MODELS[request.param][0]
    for name in (module.ARTIFACT_FILE, artifacts.MANIFEST_NAME):
        shutil.copy(module.ARTIFACT_DIR / name, tmp_path / name)
    return request.param, tmp_path


def _load(which: str, directory: Path) -> Any:
    return MODELS[which][2](directory)


def test_committed_artifacts_match_their_manifests() -> None:
    for module, _, load in MODELS.values():
        manifest = read_manifest(module.ARTIFACT_DIR / artifacts.MANIFEST_NAME)
        data = (module.ARTIFACT_DIR / module.ARTIFACT_FILE).read_bytes()
        assert manifest.sha256 == artifacts.sha256_hex(data)
        assert manifest.size_bytes == len(data)
        assert set(manifest.trusted_types) <= set(module.TRUSTED_TYPES)
        assert load(module.ARTIFACT_DIR) is not None


def test_a_flipped_byte_is_refused_naming_the_file(copied: tuple[str, Path]) -> None:
    which, directory = copied
    path = directory / MODELS[which][0].ARTIFACT_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{path.name}: sha256 \w+… does not match the manifest's"):
        _load(which, directory)


def test_a_manifest_with_another_sha_is_refused(copied: tuple[str, Path]) -> None:
    which, directory = copied
    manifest_path = directory / artifacts.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not match the manifest's 0000000000000000…"):
        _load(which, directory)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda d, f: (d / f).unlink(), "artifact not found", id="artifact-missing"),
        pytest.param(lambda d, f: (d / "artifact.json").unlink(), "manifest not found", id="manifest-missing"),
        pytest.param(lambda d, f: (d / "artifact.json").write_text("{"), "manifest is unreadable", id="manifest-bad"),
        pytest.param(lambda d, f: (d / "artifact.json").write_text("{}"), "manifest lacks", id="manifest-empty"),
    ],
)
def test_missing_or_broken_files_are_refused(
    copied: tuple[str, Path], damage: Callable[[Path, str], object], message: str
) -> None:
    which, directory = copied
    damage(directory, MODELS[which][0].ARTIFACT_FILE)
    with pytest.raises(ArtifactError, match=message):
        _load(which, directory)


def test_a_manifest_for_another_file_is_refused(tmp_path: Path) -> None:
    shutil.copy(iris_model.ARTIFACT_DIR / "iris.skops", tmp_path / "iris.skops")
    shutil.copy(digits_model.ARTIFACT_DIR / artifacts.MANIFEST_NAME, tmp_path / artifacts.MANIFEST_NAME)
    with pytest.raises(ArtifactError, match=r"describes 'digits\.skops'"):
        iris_model.IrisClassifier.load(tmp_path)


def test_a_type_outside_the_allow_list_is_refused() -> None:
    # The digits forest holds sklearn Trees; without them on the allow-list it must not load.
    with pytest.raises(ArtifactError, match=r"digits\.skops: holds types outside.*sklearn\.tree\._tree\.Tree"):
        artifacts.load_artifact(digits_model.ARTIFACT_DIR, digits_model.ARTIFACT_FILE, trusted_types=())


def test_errors_name_the_artifact_relative_to_the_project(copied: tuple[str, Path]) -> None:
    which, _ = copied
    module = MODELS[which][0]
    path = module.ARTIFACT_DIR / module.ARTIFACT_FILE
    assert artifacts.display_path(path) == f"models/{which}/{module.ARTIFACT_FILE}"
    assert artifacts.display_path(Path("/somewhere/else/x.skops")) == "x.skops"


def _fake_forest(feature: list[int], left: list[int], right: list[int]) -> Any:
    tree = types.SimpleNamespace(
        node_count=len(feature),
        children_left=np.array(left),
        children_right=np.array(right),
        feature=np.array(feature),
        value=np.zeros((len(feature), 1, 10)),
    )
    return types.SimpleNamespace(
        classes_=np.arange(10),
        n_features_in_=64,
        estimators_=[types.SimpleNamespace(tree_=tree)],
        set_params=lambda **_: None,
    )


@pytest.mark.parametrize(
    ("feature", "left", "right"),
    [
        pytest.param([70, -2, -2], [1, -1, -1], [2, -1, -1], id="feature-out-of-range"),
        pytest.param([3, -2, -2], [1, -1, -1], [9, -1, -1], id="child-out-of-range"),
        pytest.param([3, -2, -2], [0, -1, -1], [2, -1, -1], id="child-points-back"),
        pytest.param([3, -2, -2], [1, -1, -1], [-1, -1, -1], id="half-a-leaf"),
    ],
)
def test_a_forest_with_out_of_range_node_indices_is_refused(
    feature: list[int], left: list[int], right: list[int]
) -> None:
    with pytest.raises(ArtifactError, match="node indices are out of range"):
        digits_model.DigitClassifier(_fake_forest(feature, left, right))


def test_a_consistent_forest_passes_the_bounds_check() -> None:
    digits_model.DigitClassifier(_fake_forest([3, -2, -2], [1, -1, -1], [2, -1, -1]))


# --- reproducibility -----------------------------------------------------------------


def test_canonical_dumps_is_deterministic_and_loadable() -> None:
    fitted = iris_train.fit(progress=False)
    first, second = artifacts.canonical_dumps(fitted.pipeline), artifacts.canonical_dumps(fitted.pipeline)
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
    assert artifacts.canonical_dumps(grown) == artifacts.canonical_dumps(once)


@pytest.fixture(scope="module", params=list(MODELS))
def retrained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A model retrained with its train command's defaults into a scratch directory."""
    which: str = request.param
    directory = tmp_path_factory.mktemp(f"retrained-{which}")
    assert MODELS[which][1].main(["--output-dir", str(directory)]) == 0
    return which, directory


def test_retraining_gives_the_committed_held_out_predictions(retrained: tuple[str, Path]) -> None:
    """The claim in models/README.md that holds whatever the library versions."""
    which, directory = retrained
    module, train, load = MODELS[which]
    committed = read_manifest(module.ARTIFACT_DIR / artifacts.MANIFEST_NAME)
    assert read_manifest(directory / artifacts.MANIFEST_NAME).held_out_accuracy == committed.held_out_accuracy
    _, _, held_out = train.split()
    old, new = load(module.ARTIFACT_DIR), load(directory)
    np.testing.assert_array_equal(old.estimator.predict(held_out.features), new.estimator.predict(held_out.features))


def test_retraining_with_the_manifest_versions_gives_the_same_bytes(retrained: tuple[str, Path]) -> None:
    """The bit-for-bit claim in models/README.md: it needs the library versions recorded."""
    which, directory = retrained
    module = MODELS[which][0]
    committed = read_manifest(module.ARTIFACT_DIR / artifacts.MANIFEST_NAME)
    installed = {k: v for k, v in artifacts.library_versions().items() if k != "python"}
    recorded = {k: v for k, v in committed.versions.items() if k != "python"}
    if installed != recorded:
        pytest.skip(f"library versions differ from {module.ARTIFACT_FILE}'s manifest: {installed} != {recorded}")
    assert read_manifest(directory / artifacts.MANIFEST_NAME).sha256 == committed.sha256


def test_train_command_reports_the_held_out_accuracy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert iris_train.main(["--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"held-out accuracy: [01]\.\d{4} on 45 flowers", out)
    assert re.search(r"iris\.skops \(\d+ bytes, sha256 [0-9a-f]{64}\)", out)
