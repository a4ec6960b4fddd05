"""`flask --app main new-model NAME --from model.onnx`: schemas from the graph, tests that pass, refusals."""

from __future__ import annotations

import ast
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from onnx import TensorProto, helper

from serving.cli.onnx_scaffold import GraphPlan, plan_graph, python_literal
from serving.kit import OnnxModel
from tests.scaffolding import run_in_copy
from tests.servers import PROJECT_ROOT, VENV_BIN, base_env

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _iris_classifier(zipmap: bool = False) -> tuple[Any, bytes]:
    """A logistic regression fitted on load_iris, and its skl2onnx conversion (float32 input)."""
    from skl2onnx import to_onnx  # type: ignore[import-untyped]
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=1000).fit(x, y)
    model = to_onnx(estimator, x[:1].astype(np.float32), options={"zipmap": zipmap})
    return estimator, model.SerializeToString()


def _graph(inputs: list[Any], outputs: list[Any], nodes: list[Any]) -> bytes:
    graph = helper.make_graph(nodes, "scaffold_test", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _identity(elem_type: int, shape: list[Any] | None) -> bytes:
    """A graph that returns its one input unchanged, of `elem_type` and `shape` (None: unknown rank)."""
    return _graph(
        [helper.make_tensor_value_info("x", elem_type, shape)],
        [helper.make_tensor_value_info("y", elem_type, shape)],
        [helper.make_node("Identity", ["x"], ["y"])],
    )


# --- end to end: scaffold, run the generated tests, answer over HTTP -----------------

PREDICT_ALL = """
import json, sys
from serving.app import create_app
from serving.config.settings import Settings
client = create_app(Settings(model_loading="lazy", metrics=False)).test_client()
rows = json.loads(sys.argv[1])
answers = [client.post("/v1/FlowerKind", json=row) for row in rows]
print(json.dumps([[a.status_code, a.get_json()["result"]["label"]] for a in answers]))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("named", [True, False], ids=["features", "array"])
def test_a_scaffold_from_an_onnx_file_passes_its_tests_and_answers(
    project_copy: Path,
    tmp_path: Path,
    named: bool,
) -> None:
    from sklearn.datasets import load_iris

    estimator, data = _iris_classifier()
    source = tmp_path / "flowers.onnx"
    source.write_bytes(data)
    features = ["--features", ",".join(FEATURES)] if named else []
    flask = [str(VENV_BIN / "flask"), "--app", "main", "new-model", "FlowerKind", "--from", str(source)]

    result = run_in_copy([*flask, *features], project_copy)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = ("handlers/flower_kind.py", "models/flower_kind.py", "tests/handlers/test_flower_kind.py")
    written = [project_copy / name for name in names]
    assert all(f"wrote {path}" in result.stdout for path in written)
    assert (project_copy / "models" / "flower_kind.onnx").read_bytes() == data
    # The generated tests, and the contract test over the new handler.
    selected = ["tests/handlers/test_flower_kind.py", "tests/handlers/test_handler_contract.py", "-k", "flower_kind"]
    tests = run_in_copy([str(VENV_BIN / "python"), "-m", "pytest", "-q", *selected], project_copy)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout
    assert "skipped" not in tests.stdout
    relative = [str(path.relative_to(project_copy)) for path in written]
    assert run_in_copy([str(VENV_BIN / "ruff"), "check", *relative], project_copy).returncode == 0
    assert run_in_copy([str(VENV_BIN / "ruff"), "format", "--check", *relative], project_copy).returncode == 0
    # Every load_iris flower through POST /v1/FlowerKind gets scikit-learn's class.
    x = load_iris().data
    rows = [dict(zip(FEATURES, row, strict=True)) if named else {"X": list(row)} for row in x.tolist()]
    answered = run_in_copy([str(VENV_BIN / "python"), "-c", PREDICT_ALL, json.dumps(rows)], project_copy)
    assert answered.returncode == 0, answered.stderr[-3000:]
    statuses, labels = zip(*json.loads(answered.stdout.strip().splitlines()[-1]), strict=True)
    assert set(statuses) == {200}
    assert list(labels) == estimator.predict(x).tolist()


def _repository_onnx_files() -> list[str]:
    """Every ONNX file in git, and SentenceEmbedding's graph (`make models` exports it; not in git)."""
    listed = subprocess.run(
        ["git", "ls-files", "*.onnx"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return sorted({*listed, EMBEDDING_GRAPH})


EMBEDDING_GRAPH = "models/sentence_embedding/model.onnx"


@pytest.mark.e2e
@pytest.mark.parametrize("source", _repository_onnx_files())
def test_every_onnx_file_in_the_repository_scaffolds_into_passing_tests(project_copy: Path, source: str) -> None:
    if not (PROJECT_ROOT / source).exists():
        pytest.skip(f"{source} is missing: `make models` exports it")
    name = "Scaffolded" + "".join(part.title() for part in Path(source).stem.split("_"))
    flask = [str(VENV_BIN / "flask"), "--app", "main", "new-model", name, "--from", source]

    result = run_in_copy(flask, project_copy)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    module = f"scaffolded_{Path(source).stem}"
    selected = [f"tests/handlers/test_{module}.py", "tests/handlers/test_handler_contract.py", "-k", module]
    tests = run_in_copy(
        [str(VENV_BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected], project_copy
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "failed" not in tests.stdout
    assert "skipped" not in tests.stdout


@pytest.mark.e2e
def test_new_model_prints_only_what_it_wrote_in_a_fresh_checkout_with_default_settings(project_copy: Path) -> None:
    # As issue 23's reader ran it: no LOG_LEVEL, no MODEL_LOADING (so eager), and a fresh
    # clone where SentenceEmbedding is not exported yet, whose load fails with a warning.
    for name in ("model.onnx", "tokenizer.json"):
        (project_copy / "models" / "sentence_embedding" / name).unlink(missing_ok=True)
    env = base_env()
    for setting in ("LOG_LEVEL", "MODEL_LOADING", "PYTHONPATH"):
        env.pop(setting, None)
    flask = [str(VENV_BIN / "flask"), "--app", "main", "new-model", "IrisCopy", "--from", "models/iris/iris.onnx"]

    result = subprocess.run(flask, cwd=project_copy, env=env, capture_output=True, text=True, timeout=240, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["wrote"] * 4 + ["next:"]


# --- refusals ------------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "given" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "extra", "message"),
    [
        pytest.param(
            lambda: _iris_classifier(zipmap=True)[1],
            [],
            "output 'output_probability' is seq(map(int64,tensor(float))), not a tensor "
            "(skl2onnx: convert with options={'zipmap': False})",
            id="zipmap",
        ),
        pytest.param(
            lambda: _identity(TensorProto.STRING, None),
            [],
            "input x: tensor(string) []: no batch dimension (a scalar, or a shape the graph does not declare)",
            id="string-of-unknown-shape",
        ),
        pytest.param(
            lambda: _identity(TensorProto.FLOAT, ["N", "H", "W"]),
            [],
            "input x: tensor(float) [N, H, W]: dimensions [1, 2] are all dynamic",
            id="two-dynamic-dimensions",
        ),
        pytest.param(
            lambda: _identity(TensorProto.FLOAT, [8, 3]),
            [],
            "its first dimension is fixed at 8, not a batch dimension",
            id="fixed-batch",
        ),
        pytest.param(
            lambda: _identity(TensorProto.BFLOAT16, ["N"]),
            [],
            "JSON has no values of type tensor(bfloat16)",
            id="bfloat16",
        ),
        pytest.param(
            lambda: _iris_classifier()[1],
            ["--features", "a,b"],
            "--features names 2 features; the graph's input X: tensor(float) [?, 4] takes 4",
            id="too-few-features",
        ),
        pytest.param(
            lambda: _iris_classifier()[1],
            ["--features", "a,b,c,a"],
            "--features: 'a' is given twice",
            id="repeated-feature",
        ),
        pytest.param(
            lambda: _identity(TensorProto.INT64, ["N", 2]),
            ["--features", "a,b"],
            "--features needs one float input of shape [N, k]; the graph has x: tensor(int64) [N, 2]",
            id="features-of-integers",
        ),
        pytest.param(lambda: b"not a model", [], "ONNX Runtime cannot load this model", id="not-onnx"),
    ],
)
def test_an_unsupported_graph_is_refused_saying_what_was_found(
    make_app: Callable[..., Flask], tmp_path: Path, data: Callable[[], bytes], extra: list[str], message: str
) -> None:
    source = _write(tmp_path, data())
    project = tmp_path / "project"
    runner = make_app(model_loading="lazy").test_cli_runner()

    result = runner.invoke(args=["new-model", "Given", "--from", str(source), "--directory", str(project), *extra])

    assert result.exit_code == 1
    assert f"cannot serve {source} as model 'Given': " in result.output
    assert message in " ".join(result.output.split())
    assert not project.exists()


def test_features_without_an_onnx_file_are_refused(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    runner = make_app(model_loading="lazy").test_cli_runner()

    result = runner.invoke(args=["new-model", "Given", "--features", "a,b", "--directory", str(tmp_path)])

    assert result.exit_code == 1
    assert "use it with --from" in result.output
    assert list(tmp_path.iterdir()) == []


# --- how graphs map to schemas -------------------------------------------------------


def _plan(data: bytes, features: list[str] | None = None) -> GraphPlan:
    return plan_graph(OnnxModel(data), features)


def test_a_string_input_per_row_is_a_string_field_and_batches() -> None:
    plan = _plan(_identity(TensorProto.STRING, ["N"]))
    assert plan.input_schema()["properties"] == {"x": {"type": "string"}}
    assert plan.outputs == (("y", {"type": "string"}),)
    assert plan.batchable


def test_integer_inputs_are_bounded_by_their_type() -> None:
    plan = _plan(_identity(TensorProto.UINT8, ["N", 2]))
    item = {"type": "integer", "minimum": 0, "maximum": 255}
    assert plan.input_schema()["properties"]["x"] == {"type": "array", "items": item, "minItems": 2, "maxItems": 2}
    assert plan.inputs[0].dtype == "uint8"


def test_a_dynamic_sequence_length_is_an_array_of_any_length_served_one_by_one() -> None:
    plan = _plan(_identity(TensorProto.INT64, ["batch", "sequence"]))
    schema = plan.input_schema()["properties"]["x"]
    assert (schema["type"], schema["minItems"], "maxItems" in schema) == ("array", 1, False)
    assert not plan.batchable


def test_a_batch_fixed_at_one_is_served_one_by_one() -> None:
    plan = _plan(_identity(TensorProto.FLOAT, [1, 2, 3]))
    assert plan.input_schema()["examples"] == [{"x": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]}]
    assert not plan.batchable


def test_named_features_become_number_fields() -> None:
    schema = _plan(_iris_classifier()[1], FEATURES).input_schema()
    assert schema["required"] == FEATURES
    assert schema["properties"]["petal_width"] == {"type": "number"}
    assert schema["examples"] == [dict.fromkeys(FEATURES, 0.0)]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": {"b": [1, 2.5, "x", None, True]}, "c": []}, id="nested"),
        pytest.param({'key with "quotes" and é': "ünï\ncode", "it's": "\\"}, id="escapes"),
        pytest.param([{"k" * 60: ["v" * 50]}], id="long-lines"),
    ],
)
def test_python_literal_is_python_for_the_same_value_as_ruff_formats_it(value: Any, tmp_path: Path) -> None:
    source = python_literal(value)
    assert ast.literal_eval(source) == value
    path = tmp_path / "literal.py"
    path.write_text(f"VALUE = {source}\n")
    formatted = run_in_copy(
        [str(VENV_BIN / "ruff"), "format", "--line-length", "120", "--check", "--diff", str(path)], tmp_path
    )
    assert formatted.returncode == 0, formatted.stdout
