"""From a trained model to a served one, for the first models people train.

Each model is converted with the project's export helper (models/onnx_export.py),
scaffolded with `new-model --from` into one copy of the project, whose generated tests
must pass; then one gunicorn serves all of them and every row of the data set goes
through HTTP, and the answers must agree with the trained model: the same labels, and
probabilities, scores or values within the tolerances below.

Tolerances (float32 in ONNX Runtime against float64 in scikit-learn, float32 in torch),
measured with the pinned versions in brackets:
- probabilities: 1e-5 absolute (RandomForest 4.2e-7, the pipeline 2.0e-7,
  HistGradientBoosting 1.2e-7);
- a regressor's value: 1e-5 relative (HistGradientBoostingRegressor 5.2e-7);
- an MLP's scores: 1e-5 absolute (1.2e-7).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import requests

from models.onnx_export import sklearn_to_onnx, torch_to_onnx
from serving.app import create_app
from serving.config.settings import Settings
from tests.conftest import require_export_tools
from tests.scaffolding import copy_project, run_in_copy
from tests.servers import VENV_BIN, ServerProcess, free_port, gunicorn_command, running_server

# A real gunicorn, and the PyTorch row needs the export environment (torch): run with the
# `export` tests, on 3.11 (docs/development.md), where a missing torch fails in CI.
pytestmark = [pytest.mark.e2e, pytest.mark.export]

PROBABILITY_TOLERANCE = 1e-5
VALUE_RELATIVE_TOLERANCE = 1e-5
SCORE_TOLERANCE = 1e-5


@dataclass
class Case:
    """A trained model, what the served one must answer, and how it was scaffolded."""

    name: str
    data: bytes
    rows: np.ndarray
    labels: list[Any] | None  # the predicted class of each row (None: a regressor)
    scores: np.ndarray  # probabilities or scores [N, k], or values [N]
    scores_field: str
    classes: list[str] | None = None  # keys of the scores object; None: the scores are a list
    options: list[str] = field(default_factory=list)
    features: list[str] | None = None  # --features as given: requests use their field names

    def requests(self, fields: list[str] | None) -> list[dict[str, Any]]:
        if fields is None:
            return [{"X": row} for row in self.rows.tolist()]
        return [dict(zip(fields, row, strict=True)) for row in self.rows.tolist()]


def _wine_pipeline() -> Case:
    from sklearn.datasets import load_wine  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    wine = load_wine()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(wine.data, wine.target)
    names = list(wine.target_names)
    return Case(
        "WinePipeline",
        sklearn_to_onnx(model, wine.data.shape[1]),
        wine.data,
        [names[label] for label in model.predict(wine.data)],
        model.predict_proba(wine.data),
        "probabilities",
        names,
        ["--features", ",".join(wine.feature_names), "--classes", ",".join(names)],
        list(wine.feature_names),
    )


def _wine_forest() -> Case:
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    x, y = load_wine(return_X_y=True)
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(x, y)
    proba = model.predict_proba(x)
    return Case("WineForest", sklearn_to_onnx(model, x.shape[1]), x, model.predict(x).tolist(), proba, "probabilities")


def _wine_boosting() -> Case:
    """String targets: the graph carries the class names, no --classes needed."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import HistGradientBoostingClassifier  # type: ignore[import-untyped]

    wine = load_wine()
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(wine.data, wine.target_names[wine.target])
    return Case(
        "WineBoosting",
        sklearn_to_onnx(model, wine.data.shape[1]),
        wine.data,
        model.predict(wine.data).tolist(),
        model.predict_proba(wine.data),
        "probabilities",
        [str(name) for name in model.classes_],
        ["--features", ",".join(wine.feature_names), "--example", json.dumps(wine.data[0].tolist())],
        list(wine.feature_names),
    )


def _diabetes_boosting() -> Case:
    from sklearn.datasets import load_diabetes  # type: ignore[import-untyped]
    from sklearn.ensemble import HistGradientBoostingRegressor  # type: ignore[import-untyped]

    diabetes = load_diabetes()
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(diabetes.data, diabetes.target)
    return Case(
        "DiabetesBoosting",
        sklearn_to_onnx(model, diabetes.data.shape[1]),
        diabetes.data,
        None,
        model.predict(diabetes.data),
        "variable",
        options=["--features", ",".join(diabetes.feature_names)],
        features=list(diabetes.feature_names),
    )


def _iris_network() -> Case:
    """A small PyTorch MLP: no label output, so the scaffold adds the highest-scoring class."""
    require_export_tools("torch")
    import torch
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]

    iris = load_iris()
    torch.manual_seed(0)
    x = torch.tensor(iris.data, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), torch.tensor(iris.target))
        loss.backward()
        optimizer.step()
    data = torch_to_onnx(net, 4)
    with torch.no_grad():
        scores = net(x).numpy()
    names = list(iris.target_names)
    return Case(
        "IrisNetwork",
        data,
        iris.data,
        [names[i] for i in scores.argmax(axis=1)],
        scores,
        "scores",
        names,
        ["--features", ",".join(iris.feature_names), "--classes", ",".join(names)],
        list(iris.feature_names),
    )


BUILDERS: dict[str, Callable[[], Case]] = {
    "pipeline-scaler-logistic": _wine_pipeline,
    "random-forest": _wine_forest,
    "hist-gradient-boosting-classifier": _wine_boosting,
    "hist-gradient-boosting-regressor": _diabetes_boosting,
    "pytorch-mlp": _iris_network,
}


@dataclass
class Matrix:
    cases: dict[str, Case]
    generated_tests: Any
    server: ServerProcess

    def input_schema(self, case: Case) -> dict[str, Any]:
        """The served model's input schema, as GET /v1/models/<name> shows it."""
        answer = requests.get(f"{self.server.url}/v1/models/{case.name}", timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["input_schema"])

    def bodies(self, case: Case) -> list[dict[str, Any]]:
        """A request per row, with the fields the generated handler made of --features."""
        fields = list(self.input_schema(case)["properties"]) if case.features is not None else None
        return case.requests(fields)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """Every model converted and scaffolded into one project copy, its tests run, served by one gunicorn."""
    root = tmp_path_factory.mktemp("matrix")
    project = copy_project(root / "project")
    cases = {key: build() for key, build in BUILDERS.items()}
    runner = create_app(Settings(model_loading="lazy", metrics=False)).test_cli_runner()
    for case in cases.values():
        source = root / f"{case.name}.onnx"
        source.write_bytes(case.data)
        args = ["new-model", case.name, "--from", str(source), *case.options, "--directory", str(project)]
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    tests = [f"tests/handlers/test_{_module(case.name)}.py" for case in cases.values()]
    generated = run_in_copy([str(VENV_BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], project)
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "2",
        "MODEL_LOADING": "eager",
        "JOBS_DATA_DIR": str(root / "jobs"),
    }
    with running_server(gunicorn_command(), port=port, log_path=root / "gunicorn.log", env=env, cwd=project) as server:
        yield Matrix(cases, generated, server)


def _module(name: str) -> str:
    from serving.cli.new_model import module_name

    return module_name(name)


def test_the_generated_tests_pass(matrix: Matrix) -> None:
    result = matrix.generated_tests
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed" not in result.stdout
    assert "skipped" not in result.stdout


@pytest.mark.parametrize("key", list(BUILDERS))
def test_the_served_model_agrees_with_the_trained_one(matrix: Matrix, key: str) -> None:
    case = matrix.cases[key]
    bodies = matrix.bodies(case)

    batch = requests.post(f"{matrix.server.url}/v1/models/{case.name}:predict", json={"instances": bodies}, timeout=60)
    one_by_one = [requests.post(f"{matrix.server.url}/v1/{case.name}", json=body, timeout=30) for body in bodies[:5]]

    assert batch.status_code == 200, batch.text
    assert [answer.status_code for answer in one_by_one] == [200] * 5
    _check(case, batch.json()["predictions"])
    _check(case, [answer.json()["result"] for answer in one_by_one])


def _check(case: Case, results: list[dict[str, Any]]) -> None:
    """`results` (for the first len(results) rows) agree with what the trained model gives."""
    expected = case.scores[: len(results)]
    if case.labels is None:
        values = np.asarray([result[case.scores_field] for result in results], dtype=np.float64)
        assert values.shape == (len(results), 1)
        np.testing.assert_allclose(values[:, 0], expected, rtol=VALUE_RELATIVE_TOLERANCE)
        return
    assert [result["label"] for result in results] == case.labels[: len(results)]
    if case.classes is None:
        scores = np.asarray([result[case.scores_field] for result in results])
    else:
        assert all(list(result[case.scores_field]) == case.classes for result in results)
        scores = np.asarray([list(result[case.scores_field].values()) for result in results])
    tolerance = SCORE_TOLERANCE if case.scores_field == "scores" else PROBABILITY_TOLERANCE
    np.testing.assert_allclose(scores, expected, rtol=0, atol=tolerance)


def test_real_feature_names_are_fields_titled_with_them(matrix: Matrix) -> None:
    case = matrix.cases["pipeline-scaler-logistic"]
    schema = matrix.input_schema(case)

    titles = [schema["properties"][name].get("title", name) for name in schema["properties"]]
    assert titles == case.features
    assert schema["properties"]["od280_od315_of_diluted_wines"]["title"] == "od280/od315_of_diluted_wines"


def test_an_example_row_is_the_schemas_example(matrix: Matrix) -> None:
    case = matrix.cases["hist-gradient-boosting-classifier"]

    assert matrix.input_schema(case)["examples"] == [matrix.bodies(case)[0]]


def test_the_server_log_shows_no_crash(matrix: Matrix) -> None:
    for key in BUILDERS:  # every model answered at least once by now, whichever test ran first
        case = matrix.cases[key]
        body = matrix.bodies(case)[0]
        assert requests.post(f"{matrix.server.url}/v1/{case.name}", json=body, timeout=30).status_code == 200
    log = matrix.server.log()
    for sign in ("Traceback", "was sent SIG", "Worker exiting", '"severity":"ERROR"', '"severity":"CRITICAL"'):
        assert sign not in log, log[-3000:]
