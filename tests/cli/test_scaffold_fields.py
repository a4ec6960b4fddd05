"""`new-model --from`: feature names made into fields, class names, example rows, a quiet command."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import numpy as np
import pytest
from flask import Flask
from flask.cli import FlaskGroup

from serving.cli.command_logs import command_log_level, loading_for_a_command
from serving.cli.onnx_fields import UnsupportedGraph, field_name, graph_class_labels, plan_classes
from serving.cli.onnx_scaffold import GraphPlan, onnx_scaffold_files, plan_graph
from serving.kit import OnnxModel
from tests.conftest import require_export_tools

WINE_NAMES = [
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
]


def _classifier(targets: list[Any], n_features: int = 4) -> tuple[Any, bytes]:
    """A logistic regression on load_iris's first `n_features` columns with `targets` as the 3 classes."""
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    from models.onnx_export import sklearn_to_onnx

    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=1000).fit(x[:, :n_features], np.asarray(targets)[y])
    return estimator, sklearn_to_onnx(estimator, n_features)


def _plan(
    data: bytes, features: list[str] | None = None, classes: list[str] | None = None, examples: tuple[str, ...] = ()
) -> GraphPlan:
    model = OnnxModel(data)
    return plan_graph(model, features, plan_classes(model.outputs, classes, graph_class_labels(data)), examples)


def _generated_model(tmp_path: Path, plan: GraphPlan, data: bytes) -> ModuleType:
    """The model code `new-model` writes for `plan`, imported from `tmp_path`, beside its graph."""
    files = onnx_scaffold_files("Given", "given", "Given", tmp_path, plan, "given.onnx")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "models" / "given.onnx").write_bytes(data)
    spec = importlib.util.spec_from_file_location("generated_given", tmp_path / "models" / "given.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- feature names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        pytest.param("petal_width", "petal_width", id="already-a-field"),
        pytest.param("_private", "_private", id="leading-underscore-kept"),
        pytest.param("od280/od315_of_diluted_wines", "od280_od315_of_diluted_wines", id="slash"),
        pytest.param("sepal length (cm)", "sepal_length_cm", id="spaces-and-brackets"),
        pytest.param("Alcohol %", "Alcohol", id="case-kept-symbol-dropped"),
        pytest.param("1st floor", "_1st_floor", id="leading-digit"),
        pytest.param("teneur en matière", "teneur_en_matiere", id="accent"),
        pytest.param("x" * 70, "x" * 64, id="cut-at-64"),
        pytest.param("%%", "", id="nothing-left"),
    ],
)
def test_a_feature_name_becomes_a_field_name(name: str, field: str) -> None:
    assert field_name(name) == field


def test_real_feature_names_become_fields_titled_with_the_original() -> None:
    _, data = _classifier(["a", "b", "c"], n_features=4)
    names = ["sepal length (cm)", "sepal width (cm)", "petal_length", "od280/od315"]

    schema = _plan(data, names).input_schema()

    assert list(schema["properties"]) == ["sepal_length_cm", "sepal_width_cm", "petal_length", "od280_od315"]
    assert schema["properties"]["od280_od315"] == {"type": "number", "title": "od280/od315"}
    assert schema["properties"]["petal_length"] == {"type": "number"}  # the form humanizes it


@pytest.mark.parametrize(
    ("names", "message"),
    [
        pytest.param(
            ["a", "b", "c", "%%"], "--features: '%%' has no letter or digit to make a field name of", id="no-field-name"
        ),
        pytest.param(
            ["a b", "a-b", "c", "d"], "--features: 'a-b' and 'a b' both become the field 'a_b'", id="same-field"
        ),
        pytest.param(["a", "b", "c", "a"], "--features: 'a' is given twice", id="repeated"),
    ],
)
def test_feature_names_that_cannot_be_fields_are_refused_by_name(names: list[str], message: str) -> None:
    _, data = _classifier(["a", "b", "c"])

    with pytest.raises(UnsupportedGraph) as refused:
        _plan(data, names)

    assert str(refused.value) == message


# --- class names ---------------------------------------------------------------------


def test_classes_name_the_label_and_key_the_probabilities(tmp_path: Path) -> None:
    # Integer targets that are not 0..k-1: the graph's labels map to the names by position.
    estimator, data = _classifier([3, 5, 7])
    plan = _plan(data, classes=["small", "medium", "large"])
    rows = np.asarray([[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]])

    results = _generated_model(tmp_path, plan, data).Given().predict_many([{"X": row} for row in rows.tolist()])

    names = {3: "small", 5: "medium", 7: "large"}
    assert [result["label"] for result in results] == [names[label] for label in estimator.predict(rows)]
    for result, expected in zip(results, estimator.predict_proba(rows), strict=True):
        assert list(result["probabilities"]) == ["small", "medium", "large"]
        assert list(result["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-5)
    properties = plan.output_schema()["properties"]
    assert properties["label"]["enum"] == ["small", "medium", "large"]
    assert properties["probabilities"]["required"] == ["small", "medium", "large"]


def test_string_labels_the_graph_carries_name_the_classes_without_the_option(tmp_path: Path) -> None:
    estimator, data = _classifier(["setosa", "versicolor", "virginica"])
    plan = _plan(data)
    row = [6.7, 3.0, 5.2, 2.3]

    (result,) = _generated_model(tmp_path, plan, data).Given().predict_many([{"X": row}])

    assert result["label"] == estimator.predict([row])[0] == "virginica"
    assert set(result["probabilities"]) == {"setosa", "versicolor", "virginica"}


@pytest.mark.export  # torch: the export environment, on 3.11 (docs/development.md)
def test_a_graph_without_a_label_output_gets_the_highest_scoring_class(tmp_path: Path) -> None:
    require_export_tools("torch")
    import torch

    from models.onnx_export import torch_to_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    data = torch_to_onnx(net, 2)
    plan = _plan(data, classes=["red", "green", "blue"])
    rows = [[0.5, -1.0], [2.0, 3.0], [-4.0, 1.0]]

    results = _generated_model(tmp_path, plan, data).Given().predict_many([{"features": row} for row in rows])

    expected = net(torch.tensor(rows)).detach().numpy()
    assert [result["label"] for result in results] == [["red", "green", "blue"][i] for i in expected.argmax(axis=1)]
    assert plan.output_schema()["required"] == ["scores", "label"]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        pytest.param(
            ["a", "b"], "--classes names 2 classes; the graph's output probabilities: tensor(float) [?, 3] scores 3"
        ),
        pytest.param(["a", "a", "b"], "--classes must be distinct, non-empty names; got ['a', 'a', 'b']"),
    ],
    ids=["too-few", "repeated"],
)
def test_classes_that_do_not_fit_the_graph_are_refused(classes: list[str], message: str) -> None:
    _, data = _classifier([0, 1, 2])

    with pytest.raises(UnsupportedGraph) as refused:
        _plan(data, classes=classes)

    assert str(refused.value) == message


# --- example rows --------------------------------------------------------------------


def test_examples_are_real_rows_given_as_arrays_or_objects_with_the_original_names() -> None:
    _, data = _classifier(["a", "b", "c"])
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    given = '{"petal width (cm)": 2.3, "sepal_length_cm": 6.7, "sepal width (cm)": 3, "petal length (cm)": 5.2}'

    examples = _plan(data, names, examples=("[5.1, 3.5, 1.4, 0.2]", given)).input_schema()["examples"]

    assert examples == [
        {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2},
        {"sepal_length_cm": 6.7, "sepal_width_cm": 3, "petal_length_cm": 5.2, "petal_width_cm": 2.3},
    ]
    assert list(examples[1]) == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


@pytest.mark.parametrize(
    ("features", "example", "message"),
    [
        pytest.param(None, "[1, 2", "--example is not JSON", id="not-json"),
        pytest.param(WINE_NAMES[:4], "[1, 2]", "--example has 2 values; the model takes 4 features", id="short-row"),
        pytest.param(None, '{"X": [1, 2, "x", 4]}', "--example does not fit the input schema at $.X[2]", id="string"),
        pytest.param(None, '{"X": [1, 2, 3, 4], "Y": 1}', "at $: Additional properties", id="unknown-field"),
        pytest.param(None, "3", "--example must be a JSON object", id="scalar"),
        pytest.param(None, '{"X": [1, 2, NaN, 4]}', "--example: NaN is not a JSON number", id="nan"),
    ],
)
def test_an_example_that_does_not_fit_is_refused_saying_where(
    features: list[str] | None, example: str, message: str
) -> None:
    _, data = _classifier(["a", "b", "c"])

    with pytest.raises(UnsupportedGraph) as refused:
        _plan(data, features, examples=(example,))

    assert message in str(refused.value)


def test_the_cli_writes_the_options_into_the_handler(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    from sklearn.datasets import load_wine  # type: ignore[import-untyped]
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    from models.onnx_export import sklearn_to_onnx

    x, y = load_wine(return_X_y=True)
    source = tmp_path / "wine.onnx"
    source.write_bytes(sklearn_to_onnx(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), 13))
    runner = make_app(model_loading="lazy").test_cli_runner()
    options = ["--features", ",".join(WINE_NAMES), "--classes", '["cultivar 1", "cultivar, 2", "cultivar 3"]']

    result = runner.invoke(
        args=[
            "new-model",
            "Wine",
            "--from",
            str(source),
            *options,
            "--example",
            str(x[0].tolist()),
            "--directory",
            str(tmp_path),
        ]
    )

    assert result.exit_code == 0, result.output
    handler = (tmp_path / "handlers" / "wine.py").read_text()
    assert '"od280_od315_of_diluted_wines": {"type": "number", "title": "od280/od315_of_diluted_wines"}' in handler
    assert '"enum": ["cultivar 1", "cultivar, 2", "cultivar 3"]' in handler
    assert f'"alcohol": {float(x[0][0])!r}' in handler


@pytest.mark.parametrize("option", [["--classes", "a,b"], ["--example", "[1]"], ["--features", "a"]])
def test_options_about_an_onnx_file_need_one(make_app: Callable[..., Flask], tmp_path: Path, option: list[str]) -> None:
    runner = make_app(model_loading="lazy").test_cli_runner()

    result = runner.invoke(args=["new-model", "Given", *option, "--directory", str(tmp_path)])

    assert result.exit_code == 1
    assert f"{option[0]} describes an ONNX model: use it with --from" in result.output
    assert list(tmp_path.iterdir()) == []


# --- a command prints its output, not the server's start-up records --------------------


@pytest.mark.parametrize(
    ("command", "level", "expected"),
    [
        pytest.param(FlaskGroup(), "INFO", "WARNING", id="flask-loads-the-app-for-a-command"),
        pytest.param(FlaskGroup(), "ERROR", "ERROR", id="a-higher-level-stays"),
        pytest.param(click.Command("run"), "INFO", "INFO", id="flask-run"),
        pytest.param(click.Command("functions-framework"), "DEBUG", "DEBUG", id="another-click-program"),
        pytest.param(None, "INFO", "INFO", id="gunicorn-or-tests"),
    ],
)
def test_the_flask_command_group_loads_the_app_quietly(
    command: click.Command | None, level: str, expected: str
) -> None:
    if command is None:
        assert command_log_level(level) == expected
        assert not loading_for_a_command()  # so an eager app loads its models
        return
    with click.Context(command):
        assert command_log_level(level) == expected
        # Only the group loading the app for one of its commands skips eager model loading.
        assert loading_for_a_command() == isinstance(command, FlaskGroup)
    assert logging.getLevelNamesMapping()[expected] >= logging.getLevelNamesMapping()[level]
