"""serving.kit: the public surface for model authors, its compatibility names, and its import boundary."""

from __future__ import annotations

import tomllib
import types

import pytest

import serving.contract
import serving.kit
import serving.runtime.onnx
from serving import errors
from tests.servers import PROJECT_ROOT

KIT_CONTRACT = "handlers and models import only the public kit (serving.kit) of the server"


def test_every_public_name_of_the_kit_is_exported() -> None:
    names = {
        name
        for name, value in vars(serving.kit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }

    assert sorted(serving.kit.__all__) == sorted(names)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (serving.contract, "InvalidInput"),
        (serving.contract, "ModelUnavailable"),
        (serving.runtime.onnx, "OnnxModel"),
        (serving.runtime.onnx, "OnnxModelError"),
        (serving.runtime.onnx, "TensorSpec"),
        (serving.runtime.onnx, "json_floats"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_old_import_paths_name_the_kits_own_objects(module: object, name: str) -> None:
    # Handlers written before the kit keep working, and `except` clauses match either way.
    assert getattr(module, name) is getattr(serving.kit, name)


def test_the_kits_exception_names_have_one_meaning() -> None:
    # The API's own errors have other names: a model raises the kit's, the server answers with these.
    assert not hasattr(errors, "InvalidInput")
    assert not hasattr(errors, "ModelUnavailable")
    assert errors.InputRejected.status == 400
    assert errors.ModelNotServing.status == 503


def test_the_kit_contract_forbids_every_other_part_of_serving() -> None:
    # A new subpackage of serving/ (a protocols package, say) that is missing from the
    # contract's list would let handlers import it unnoticed.
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["name"] == KIT_CONTRACT)
    serving_dir = PROJECT_ROOT / "serving"
    parts = {
        f"serving.{path.stem if path.is_file() else path.name}"
        for path in serving_dir.iterdir()
        if (path.is_dir() and (path / "__init__.py").is_file()) or (path.suffix == ".py" and path.stem != "__init__")
    }

    assert contract["source_modules"] == ["handlers", "models"]
    assert set(contract["forbidden_modules"]) == parts - {"serving.kit"}
