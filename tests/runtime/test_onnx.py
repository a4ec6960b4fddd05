"""serving/runtime/onnx.py: specs of a graph's inputs and outputs, running a batch, threads from Settings."""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from serving.config.settings import Settings
from serving.kit import onnx as onnx_runtime
from serving.runtime import onnx_process
from serving.runtime.onnx import (
    OnnxModel,
    OnnxModelError,
    OnnxRuntimeOptions,
    configure_onnx_runtime,
    onnx_runtime_options,
    options_from_settings,
)
from tests.conftest import FIXTURE_HANDLERS
from tests.runtime.onnx_graphs import WIDTH, expected_y, two_branch_matmul


@pytest.fixture
def model() -> OnnxModel:
    return OnnxModel(two_branch_matmul(), name="two_branch.onnx")


@pytest.fixture
def process_options() -> Iterator[OnnxRuntimeOptions]:
    """Restore the process's ONNX Runtime options after the test."""
    saved = onnx_runtime_options()
    yield saved
    configure_onnx_runtime(saved)


def test_specs_give_names_dtypes_and_shapes(model: OnnxModel) -> None:
    (x,) = model.inputs
    assert (x.name, x.onnx_type, x.dtype, x.shape) == ("X", "tensor(float)", np.dtype(np.float32), ("batch", WIDTH))
    assert x.is_tensor
    assert (x.element_type, x.dynamic_axes) == ("float", (0,))
    assert x.describe() == f"X: tensor(float) [batch, {WIDTH}]"
    assert [(spec.name, spec.dtype, spec.shape) for spec in model.outputs] == [
        ("Y", np.dtype(np.float32), ("batch", WIDTH)),
        ("N", np.dtype(np.int64), ()),
    ]


def test_run_computes_the_graph_on_a_batch(model: OnnxModel) -> None:
    x = np.random.default_rng(3).standard_normal((5, WIDTH)).astype(np.float32)
    out = model.run({"X": x})
    assert set(out) == {"Y", "N"}
    np.testing.assert_allclose(out["Y"], expected_y(x), rtol=1e-4, atol=1e-4)
    assert out["N"] == 5
    assert set(model.run({"X": x}, outputs=["N"])) == {"N"}


def test_run_converts_float64_to_the_inputs_float32(model: OnnxModel) -> None:
    x = np.random.default_rng(4).standard_normal((2, WIDTH))
    np.testing.assert_allclose(model.run({"X": x})["Y"], expected_y(x.astype(np.float32)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        pytest.param({}, "missing ['X']", id="missing"),
        pytest.param({"X": np.zeros((1, WIDTH)), "Z": 1}, "unknown ['Z']", id="unknown"),
        pytest.param(
            {"X": np.zeros((1, 3))}, f"X: tensor(float) [batch, {WIDTH}] got an array of shape (1, 3)", id="dim"
        ),
        pytest.param({"X": np.zeros(WIDTH)}, "got an array of shape", id="rank"),
        pytest.param({"X": np.full((1, WIDTH), "a")}, "takes tensor(float), got <U1", id="dtype"),
    ],
)
def test_run_refuses_feeds_that_do_not_fit_naming_the_problem(
    model: OnnxModel, feeds: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=r"^two_branch\.onnx: ") as info:
        model.run(feeds)
    assert message in str(info.value)


def test_unknown_names_are_refused_with_the_names_there_are(model: OnnxModel) -> None:
    with pytest.raises(KeyError, match=r"has no output 'P'; it has \['Y', 'N'\]"):
        model.output("P")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read the ONNX file", id="missing"),
        pytest.param(b"not a model", "ONNX Runtime cannot load this model", id="garbage"),
    ],
)
def test_a_file_that_is_not_a_model_fails_naming_it(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "broken.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(OnnxModelError, match=f"^broken.onnx: {message}"):
        OnnxModel(path)


def test_sessions_take_the_threads_the_process_was_configured_with(process_options: object) -> None:
    configure_onnx_runtime(OnnxRuntimeOptions(intra_op_threads=3, inter_op_threads=2))
    session = OnnxModel(two_branch_matmul())._session()
    options = session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 2)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    own = OnnxModel(two_branch_matmul(), intra_op_threads=1)._session().get_session_options()
    assert own.intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("env", "cores", "expected"),
    [
        pytest.param({}, 2, OnnxRuntimeOptions(1, 1, False), id="2 cores, 2 workers"),
        pytest.param({"GUNICORN_WORKERS": "1"}, 2, OnnxRuntimeOptions(2, 1, False), id="2 cores, 1 worker"),
        pytest.param({"GUNICORN_WORKERS": "4"}, 2, OnnxRuntimeOptions(1, 1, False), id="more workers than cores"),
        pytest.param({}, 8, OnnxRuntimeOptions(4, 1, False), id="8 cores, 2 workers"),
        pytest.param(
            {"ONNX_INTRA_OP_THREADS": "3", "ONNX_INTER_OP_THREADS": "2", "ONNX_SPIN_WAIT": "true"},
            2,
            OnnxRuntimeOptions(3, 2, True),
            id="explicit",
        ),
    ],
)
def test_options_from_settings_never_oversubscribe_by_default(
    env: dict[str, str], cores: int, expected: OnnxRuntimeOptions
) -> None:
    assert options_from_settings(Settings.from_env(env), cores=cores) == expected


def test_the_app_factory_configures_the_process(make_app: Callable[..., Flask], process_options: object) -> None:
    make_app(handlers_dir=FIXTURE_HANDLERS / "ok", onnx_intra_op_threads=3)
    assert onnx_runtime_options().intra_op_threads == 3


def test_the_heap_is_trimmed_before_a_fork_only_after_a_session_was_released(model: OnnxModel) -> None:
    onnx_process.trim_heap_before_fork()  # whatever earlier tests left
    model.warm()

    assert onnx_process.trim_heap_before_fork() is False  # nothing released yet
    model._release_before_fork()
    assert onnx_process.trim_heap_before_fork() is True
    assert onnx_process.trim_heap_before_fork() is False  # once per release


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.005, 0.015, 0.98], [0.005, 0.015, 0.98]), ([1e-9, 0.12345678], [1e-9, 0.12345678]), ([], [])],
    ids=["forest-votes", "tiny-and-long", "empty"],
)
def test_json_floats_are_the_shortest_decimals_of_the_float32_values(
    values: list[float], expected: list[float]
) -> None:
    array = np.asarray(values, dtype=np.float32)

    floats = onnx_runtime.json_floats(array)

    assert floats == expected
    assert np.array_equal(np.asarray(floats, dtype=np.float32), array)  # nothing computed is lost


def test_json_floats_match_numpys_shortest_text_for_many_values() -> None:
    # orjson writes them; numpy's float32-to-text conversion is the reference.
    rng = np.random.default_rng(7)
    array = np.concatenate(
        [rng.random(20_000, dtype=np.float32) ** power for power in (1, 7, 30)]
        + [np.array([0.0, 1.0, 1.4e-45, 1e-40, 3.4e38, 1 / 3], dtype=np.float32)]
    )

    floats = onnx_runtime.json_floats(array)

    assert floats == [float(text) for text in array.astype(str)]


def test_json_floats_keep_values_that_are_not_finite() -> None:
    floats = onnx_runtime.json_floats(np.array([0.5, np.nan, np.inf, -np.inf], dtype=np.float32))

    assert floats[0] == 0.5
    assert math.isnan(floats[1])
    assert floats[2:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    "rows",
    [[[0.005, 0.995], [1.0, 0.0]], [[0.1, 0.2, 0.7]], [[np.nan, 1.0]], np.zeros((0, 3))],
    ids=["two-rows", "one-row", "not-finite", "no-rows"],
)
def test_json_float_rows_are_json_floats_row_by_row(rows: object) -> None:
    array = np.asarray(rows, dtype=np.float32)

    converted = onnx_runtime.json_float_rows(array)

    expected = [onnx_runtime.json_floats(row) for row in array]
    assert len(converted) == len(expected)
    for got, want in zip(converted, expected, strict=True):
        assert np.array_equal(np.asarray(got), np.asarray(want), equal_nan=True)
        assert all(type(value) is float for value in got)


def test_json_float_rows_refuse_an_array_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        onnx_runtime.json_float_rows(np.zeros(3, dtype=np.float32))


def test_close_waits_for_a_running_call_then_refuses_new_ones(model: OnnxModel) -> None:
    x = np.ones((2, WIDTH), dtype=np.float32)
    started, finish = threading.Event(), threading.Event()

    def running_call() -> None:
        with model._native():  # a thread inside ONNX Runtime, as a run() would be
            started.set()
            finish.wait(10)

    caller = threading.Thread(target=running_call)
    caller.start()
    started.wait(10)
    assert model.close(0.05) is False  # still running: the caller is told, nothing destroyed
    finish.set()
    caller.join()

    assert model.close(5) is True
    with pytest.raises(OnnxModelError, match="closed, this process is stopping"):
        model.run({"X": x})


def test_close_onnx_models_names_the_models_still_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_runtime, "_live_models", weakref.WeakSet())  # not other tests' models
    idle = OnnxModel(two_branch_matmul(), name="idle.onnx")
    busy = OnnxModel(two_branch_matmul(), name="busy.onnx")
    with busy._native():
        assert onnx_process.close_onnx_models(0.05) == ["busy.onnx"]
    with pytest.raises(OnnxModelError):
        idle.warm()


def test_importing_the_module_turns_onnx_runtime_telemetry_off() -> None:
    # Its thread does not survive gunicorn's fork (serving/runtime/onnx_process.py).
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    assert onnx_process.telemetry_thread_started is False
