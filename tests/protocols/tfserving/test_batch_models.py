"""The batch route over the real example models, as TF Serving and Vertex AI clients call it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.servers import PROJECT_ROOT, ServerProcess, free_port, gunicorn_command, running_server

SAMPLES = PROJECT_ROOT / "models" / "digits" / "samples"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}

pytestmark = pytest.mark.skipif(
    not (PROJECT_ROOT / "handlers" / "digits.py").exists(), reason="the example models are not in handlers/"
)


def _sample(digit: int) -> str:
    return base64.b64encode((SAMPLES / f"{digit}.png").read_bytes()).decode()


@pytest.fixture(scope="module")
def models_client() -> FlaskClient:
    from serving.app import create_app
    from serving.config.settings import Settings

    # Lazy: only Iris and Digits load, not the optional SentenceEmbedding.
    return create_app(Settings(model_loading="lazy")).test_client()


def test_iris_batch_in_order(models_client: FlaskClient) -> None:
    response = models_client.post("/v1/models/Iris:predict", json={"instances": [SETOSA, VIRGINICA, SETOSA]})

    assert response.status_code == 200
    assert [p["label"] for p in response.get_json()["predictions"]] == ["setosa", "virginica", "setosa"]


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda s: {"b64": s}, id="tf-serving-b64-object"),
        pytest.param(lambda s: s, id="plain-base64-string"),
        pytest.param(lambda s: {"b64": s.rstrip("=").replace("+", "-").replace("/", "_")}, id="url-safe-unpadded"),
    ],
)
def test_digits_batch_reads_each_png(models_client: FlaskClient, wrap: Callable[[str], Any]) -> None:
    instances = [{"image": wrap(_sample(7))}, {"image": wrap(_sample(3))}]

    response = models_client.post("/v1/models/Digits:predict", json={"instances": instances})

    assert response.status_code == 200, response.get_json()
    assert [p["digit"] for p in response.get_json()["predictions"]] == [7, 3]


@pytest.mark.parametrize(
    ("image", "path"),
    [
        pytest.param(
            {"b64": base64.b64encode(b"not a png at all").decode()},
            "$.instances[1]",
            id="not-an-image",
        ),
        pytest.param({"b64": "%%%"}, "$.instances[1].image.b64", id="not-base64"),
        pytest.param({"b64": ""}, "$.instances[1].image", id="empty"),
    ],
)
def test_one_unusable_image_fails_the_batch_naming_it(
    models_client: FlaskClient, image: dict[str, str], path: str
) -> None:
    instances = [{"image": {"b64": _sample(7)}}, {"image": image}, {"image": {"b64": _sample(3)}}]

    response = models_client.post("/v1/models/Digits:predict", json={"instances": instances})

    assert response.status_code == 400
    error = response.get_json()
    assert error["path"] == path
    assert error["error"] == error["message"]
    assert error["message"].startswith("instances[1]")


@pytest.fixture(scope="module")
def vertex_digits(tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = free_port()
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
        "DEFAULT_MODEL": "Digits",
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "MODEL_LOADING": "lazy",
    }
    log_path = tmp_path_factory.mktemp("vertex") / "gunicorn.log"
    with running_server(
        gunicorn_command(), port=port, log_path=log_path, env=env, ready_path=env["AIP_HEALTH_ROUTE"]
    ) as server:
        yield server


@pytest.mark.e2e
def test_vertex_ai_client_gets_digits_from_a_real_gunicorn(vertex_digits: ServerProcess) -> None:
    body = {"instances": [{"image": {"b64": _sample(3)}}, {"image": {"b64": _sample(7)}}], "parameters": {}}

    response = requests.post(vertex_digits.url + "/v1/endpoints/1/deployedModels/2:predict", json=body, timeout=60)

    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["digit"] for p in predictions] == [3, 7]
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-6 for p in predictions)


def test_digits_sample_files_exist() -> None:
    assert sorted(p.name for p in Path(SAMPLES).glob("*.png")) == ["3.png", "7.png"]


@pytest.mark.parametrize("model", ["Iris", "Digits"])
def test_openapi_shows_each_models_examples_as_a_batch(make_app: Callable[..., Flask], model: str) -> None:
    document = make_app(model_loading="lazy").test_client().get("/openapi.json").get_json()

    media = document["paths"][f"/v1/models/{model}:predict"]["post"]["requestBody"]["content"]["application/json"]
    first = next(iter(media["examples"].values()))["value"]
    assert len(first["instances"]) >= 2
