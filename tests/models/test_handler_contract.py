"""Every example handler against the contract the core relies on."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.models.conftest import HANDLER_MODULES, handler

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
# Packages a handler must not import when it is imported: the core imports every handler
# at start-up, including ones whose packages are missing.
HEAVY_MODULES = ("torch", "sentence_transformers", "transformers", "sklearn", "skops", "PIL")


def test_importing_handlers_loads_no_heavy_package() -> None:
    code = (
        "import json, sys\n"
        f"for name in {list(HANDLER_MODULES)!r}: __import__(name)\n"
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("module_name", HANDLER_MODULES)
def test_module_declares_the_contract(module_name: str) -> None:
    module = handler(module_name)
    assert (inspect.getdoc(module) or "").strip(), "the first docstring line is the model's description"
    assert isinstance(module.NAME, str)
    assert re.match(NAME_PATTERN, module.NAME)
    assert isinstance(module.VERSION, str)
    assert isinstance(getattr(module, "REQUIRES", ()), tuple)
    # setup() without parameters, or setup(artifacts) when the handler names ARTIFACTS.
    expected_setup_parameters = 1 if getattr(module, "ARTIFACTS", None) else 0
    assert len(inspect.signature(module.setup).parameters) == expected_setup_parameters
    assert len(inspect.signature(module.predict).parameters) == 2
    assert len(inspect.signature(module.predict_batch).parameters) == 2


@pytest.mark.parametrize("module_name", HANDLER_MODULES)
@pytest.mark.parametrize("attr", ["INPUT_SCHEMA", "OUTPUT_SCHEMA"])
def test_schemas_are_valid_draft_2020_12(module_name: str, attr: str) -> None:
    Draft202012Validator.check_schema(getattr(handler(module_name), attr))


@pytest.mark.parametrize("module_name", HANDLER_MODULES)
def test_input_schema_is_closed_with_examples(module_name: str) -> None:
    schema = handler(module_name).INPUT_SCHEMA
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["examples"], "the contract test POSTs each example"
    for example in schema["examples"]:
        Draft202012Validator(schema).validate(example)


@pytest.mark.parametrize("module_name", HANDLER_MODULES)
def test_examples_predict_outputs_that_match_the_output_schema(
    module_name: str, load_model: Callable[[str], Any]
) -> None:
    module = handler(module_name)
    model = load_model(module_name)
    validator = Draft202012Validator(module.OUTPUT_SCHEMA)
    for example in module.INPUT_SCHEMA["examples"]:
        result = module.predict(model, example)
        validator.validate(result)
        assert json.loads(json.dumps(result)) == result, "plain JSON types only"


@pytest.mark.parametrize("module_name", HANDLER_MODULES)
def test_predict_batch_equals_predict_per_item(module_name: str, load_model: Callable[[str], Any]) -> None:
    module = handler(module_name)
    model = load_model(module_name)
    examples = module.INPUT_SCHEMA["examples"] * 2
    batch = module.predict_batch(model, examples)
    singles = [module.predict(model, example) for example in examples]
    assert len(batch) == len(singles)
    for got, want in zip(batch, singles, strict=True):
        assert _close(got, want)
    assert module.predict_batch(model, []) == []


def _close(got: Any, want: Any) -> bool:
    # Batched text is padded to the longest item, which moves float32 sums in the last bits.
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, float):
        return bool(got == pytest.approx(want, abs=1e-5))
    return bool(got == want)
