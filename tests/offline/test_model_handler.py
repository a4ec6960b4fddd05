"""HandlerModelHandler under RunInference on the DirectRunner, with small fixture handlers."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURE_HANDLERS
from tests.offline.conftest import BEAM_MISSING

pytest.importorskip("apache_beam", reason=BEAM_MISSING)

from serving.offline.model_handler import HandlerModelHandler, Row
from serving.runtime.handlers import HandlerError

BATCHED = FIXTURE_HANDLERS / "batch" / "batched.py"  # doubles x; BATCH max 4; reject/crash flags
SHOUT = FIXTURE_HANDLERS / "batch" / "shout.py"  # a bare string in, upper-cased out


@pytest.fixture
def batched() -> HandlerModelHandler:
    return HandlerModelHandler(BATCHED)


def test_a_row_the_model_crashes_on_fails_alone_and_the_rest_of_its_batch_is_scored(
    batched: HandlerModelHandler, run_inference: Any
) -> None:
    elements = [{"x": x, **({"crash": True} if x == 5 else {})} for x in range(1, 11)]

    outcome = run_inference(batched, elements)

    assert sorted(r["inference"]["double"] for r in outcome.results) == [2 * x for x in range(1, 11) if x != 5]
    assert outcome.failed == [
        {
            "example": {"x": 5, "crash": True},
            "type": "ModelFailed",
            "reason": "predict raised RuntimeError: secret internal detail",
        }
    ]
    assert outcome.invalid == []
    assert outcome.counters == {"scored": 9, "failed": 1}


def test_invalid_rows_are_refused_before_batching_with_the_reason(
    batched: HandlerModelHandler, run_inference: Any
) -> None:
    elements = [{"x": 1}, {"x": "a"}, {}, {"x": 2, "colour": "red"}, {"x": 3}, {"x": 4}]

    outcome = run_inference(batched, elements)

    # Had they reached the model, it would have failed on them (2 * "a" breaks OUTPUT_SCHEMA).
    assert outcome.failed == []
    assert sorted(r["inference"]["double"] for r in outcome.results) == [2, 6, 8]
    reasons = {str(f["example"]): f["reason"] for f in outcome.invalid}
    assert reasons == {
        "{'x': 'a'}": "invalid input at $.x: 'a' is not of type 'integer'",
        "{}": "invalid input at $: 'x' is a required property",
        "{'x': 2, 'colour': 'red'}": (
            "invalid input at $: Additional properties are not allowed ('colour' was unexpected)"
        ),
    }
    assert {f["type"] for f in outcome.invalid} == {"InvalidElement"}
    assert outcome.counters == {"scored": 3, "invalid": 3}


def test_input_the_model_rejects_is_invalid_like_the_servers_400(
    batched: HandlerModelHandler, run_inference: Any
) -> None:
    outcome = run_inference(batched, [{"x": 1}, {"x": 3, "reject": True}])

    assert [r["inference"]["double"] for r in outcome.results] == [2]
    assert [(f["type"], f["reason"]) for f in outcome.failed] == [
        ("InvalidElement", "the model could not use this input: x=3 is rejected by the model")
    ]
    assert outcome.counters == {"scored": 1, "invalid": 1}


def test_batches_come_from_BATCH_and_results_name_the_model_and_version(
    batched: HandlerModelHandler, run_inference: Any
) -> None:
    outcome = run_inference(batched, [{"x": x} for x in range(20)])

    assert batched.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 4}
    assert {r["model_id"] for r in outcome.results} == {"Batched/3"}
    assert len(outcome.results) == 20
    # Beam sizes batches adaptively from 1 up to 4: the batches of more than one row went
    # through predict_batch (the fixture marks each result with the call that made it).
    assert "batch" in {r["inference"]["via"] for r in outcome.results}


def test_one_predict_batch_call_per_batch_and_predict_for_a_batch_of_one(batched: HandlerModelHandler) -> None:
    loaded = batched.load_model()

    four = [r.inference for r in batched.run_inference([{"x": x} for x in range(4)], loaded)]
    one = [r.inference for r in batched.run_inference([{"x": 9}], loaded)]

    assert four == [{"double": 2 * x, "via": "batch"} for x in range(4)]
    assert one == [{"double": 18, "via": "single"}]
    assert loaded.model == {"batch_sizes": [4], "single_calls": 1}


def test_rows_keep_their_key_and_line_and_bare_payloads_work(run_inference: Any) -> None:
    handler = HandlerModelHandler(SHOUT)

    outcome = run_inference(handler, [Row("hi", key=7, line='"hi"'), "there"])

    assert sorted((str(r["example"]), r["inference"]) for r in outcome.results) == [
        ("['hi', 7, '\"hi\"']", "HI"),
        ("there", "THERE"),
    ]


def test_the_handler_pickles_without_its_module_and_loads_again(batched: HandlerModelHandler) -> None:
    copy = pickle.loads(pickle.dumps(batched))  # noqa: S301 - our own bytes, as Beam ships them

    assert copy._loaded_spec is None  # the module's functions were not pickled
    loaded = copy.load_model()
    assert loaded.model_id == "Batched/3"
    assert next(iter(copy.run_inference([{"x": 2}], loaded))).inference == {"double": 4, "via": "single"}


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        pytest.param("missing_predict", "expected a function `predict`", id="no-predict"),
        pytest.param("invalid_schema", "INPUT_SCHEMA", id="bad-schema"),
    ],
)
def test_a_broken_handler_is_refused_at_launch_naming_its_file(directory: str, expected: str) -> None:
    path = next((FIXTURE_HANDLERS / directory).glob("*.py"))

    with pytest.raises(HandlerError, match=expected) as caught:
        HandlerModelHandler(path)

    assert str(path) in str(caught.value)


def test_a_handler_outside_the_project_is_kept_by_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "echo.py"
    path.write_text('NAME = "Echo"\nINPUT_SCHEMA = {}\n\ndef predict(model, payload):\n    return payload\n')

    handler = pickle.loads(pickle.dumps(HandlerModelHandler(path)))  # noqa: S301 - our own bytes, as Beam ships them

    assert next(iter(handler.run_inference([{"a": 1}], handler.load_model()))).inference == {"a": 1}
