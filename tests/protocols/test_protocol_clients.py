"""The official clients against a real gunicorn: `openai` on /v1/embeddings, `tritonclient` on /v2.

One server for the module (loading SentenceEmbedding takes seconds), with an API key
required, so both clients also prove that keys arrive the way they send them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.servers import PROJECT_ROOT, ServerProcess, free_port, gunicorn_command, running_server

pytestmark = pytest.mark.e2e

KEY = "protocols-secret-0123456789abcdef"
TEXTS = ["A man is playing a guitar.", "The weather is nice today."]
IRIS_ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    {"sepal_length": 5.9, "sepal_width": 2.8, "petal_length": 4.3, "petal_width": 1.3},
]


def auth() -> dict[str, str]:
    """A fresh headers dict: tritonclient adds its own headers to the one it is given."""
    return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("protocols")
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "API_KEYS": f"clients:{KEY}",
        "RATE_LIMITS": "",
        "JOBS_DATA_DIR": str(tmp / "jobs"),
    }
    command = gunicorn_command()
    with running_server(command, port=port, log_path=tmp / "gunicorn.log", env=env, startup_timeout=240) as process:
        yield process
    assert "Traceback" not in process.log()


@pytest.fixture
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture
def triton_client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)


def _predict(server: ServerProcess, model: str, payload: dict[str, Any]) -> Any:
    response = requests.post(f"{server.url}/v1/{model}", json=payload, headers=auth(), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["result"]


# --- openai ---


def _vector(embedding: list[float] | str) -> Any:
    """The client decodes base64 itself only when it chose base64 (the default), not when asked."""
    return np.frombuffer(base64.b64decode(embedding), dtype="<f4") if isinstance(embedding, str) else embedding


@pytest.mark.parametrize("encoding_format", [openai.NOT_GIVEN, "float", "base64"], ids=["default", "float", "base64"])
def test_openai_embeddings_equal_the_models_own_route(
    server: ServerProcess, client: openai.OpenAI, encoding_format: Any
) -> None:
    expected = [_predict(server, "SentenceEmbedding", {"text": text})["embedding"] for text in TEXTS]

    answer = client.embeddings.create(model="SentenceEmbedding", input=TEXTS, encoding_format=encoding_format)

    assert answer.model == "SentenceEmbedding"
    assert [item.index for item in answer.data] == [0, 1]
    got = np.array([_vector(item.embedding) for item in answer.data], dtype=np.float32)
    assert got.shape == (2, 384)
    # One batched call against two single calls: padding changes the last bits only.
    np.testing.assert_allclose(got, np.array(expected, dtype=np.float32), rtol=0, atol=1e-5)
    # [CLS] a man is playing a guitar . [SEP] = 9 and [CLS] the weather is nice today . [SEP] = 8.
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 17


def test_openai_base64_decodes_to_exactly_the_float_answer(server: ServerProcess) -> None:
    body = {"model": "SentenceEmbedding", "input": TEXTS[0]}
    floats = requests.post(f"{server.url}/v1/embeddings", json=body, headers=auth(), timeout=60).json()
    packed = requests.post(
        f"{server.url}/v1/embeddings", json={**body, "encoding_format": "base64"}, headers=auth(), timeout=60
    ).json()

    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.array(floats["data"][0]["embedding"], dtype=np.float32))


def test_openai_models_list_names_every_model(client: openai.OpenAI) -> None:
    models = list(client.models.list())

    assert {model.id for model in models} == {"Digits", "Iris", "SentenceEmbedding", "XXXModel"}
    assert {model.object for model in models} == {"model"}


@pytest.mark.parametrize(
    ("kwargs", "exception", "message"),
    [
        pytest.param({"model": "Iris", "input": "x"}, openai.BadRequestError, "does not produce embeddings", id="iris"),
        pytest.param({"model": "Nope", "input": "x"}, openai.NotFoundError, "'Nope' does not exist", id="unknown"),
        pytest.param(
            {"model": "SentenceEmbedding", "input": [[101, 102]]},
            openai.BadRequestError,
            "Token arrays are not supported",
            id="tokens",
        ),
        pytest.param(
            {"model": "SentenceEmbedding", "input": "x", "dimensions": 256},
            openai.BadRequestError,
            "cannot give 256 dimensions",
            id="dimensions",
        ),
    ],
)
def test_openai_errors_surface_as_the_librarys_exceptions(
    client: openai.OpenAI, kwargs: dict[str, Any], exception: type[openai.APIStatusError], message: str
) -> None:
    with pytest.raises(exception) as info:
        client.embeddings.create(**kwargs)

    assert message in info.value.message
    assert info.value.type is not None


def test_openai_without_the_key_is_an_authentication_error(server: ServerProcess) -> None:
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-the-key", max_retries=0)

    with pytest.raises(openai.AuthenticationError, match="Invalid API key"):
        wrong.embeddings.create(model="SentenceEmbedding", input="x")


# --- tritonclient ---


def test_triton_health_and_readiness(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("Iris", headers=auth())
    assert triton_client.is_model_ready("Iris", model_version="1.0.0", headers=auth())
    assert not triton_client.is_model_ready("Iris", model_version="9", headers=auth())
    assert not triton_client.is_model_ready("Iris")  # no key


def test_triton_model_metadata(triton_client: triton.InferenceServerClient) -> None:
    metadata = triton_client.get_model_metadata("Digits", headers=auth())

    assert metadata["name"] == "Digits"
    # The version as X-Model-Version has it: the handler's, with its model files' digest.
    (version,) = metadata["versions"]
    assert version.startswith("1.0.0+")
    assert version == triton_client.get_model_metadata("Digits", model_version=version, headers=auth())["versions"][0]
    assert metadata["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {"name": "probabilities", "datatype": "FP64", "shape": [-1, 10]} in metadata["outputs"]


@pytest.mark.parametrize(
    ("datatype", "binary"), [("FP64", True), ("FP32", True), ("FP64", False)], ids=["fp64", "fp32", "json"]
)
def test_triton_infer_iris_batch_equals_the_models_own_route(
    server: ServerProcess, triton_client: triton.InferenceServerClient, datatype: str, binary: bool
) -> None:
    inputs = []
    for feature in IRIS_ROWS[0]:
        tensor = triton.InferInput(feature, [len(IRIS_ROWS)], datatype)
        values = np.array([row[feature] for row in IRIS_ROWS], dtype=np.float64 if datatype == "FP64" else np.float32)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)

    result = triton_client.infer("Iris", inputs, headers=auth())

    labels = [label.decode() for label in result.as_numpy("label")]
    assert labels == [_predict(server, "Iris", row)["label"] for row in IRIS_ROWS]
    assert labels == ["setosa", "virginica", "versicolor"]


def test_triton_infer_text_in_and_out(triton_client: triton.InferenceServerClient) -> None:
    names = triton.InferInput("name", [2], "BYTES")
    names.set_data_from_numpy(np.array([b"Leo", "Zoë".encode()], dtype=np.object_))

    result = triton_client.infer("XXXModel", [names], headers=auth(), model_version="1.0.0")

    assert result.as_numpy("result").tolist() == [b"Hello, Leo!", "Hello, Zoë!".encode()]


def test_triton_infer_digits_from_png_bytes(triton_client: triton.InferenceServerClient) -> None:
    png = (PROJECT_ROOT / "models" / "digits" / "samples" / "3.png").read_bytes()
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([png], dtype=np.object_))
    wanted = [triton.InferRequestedOutput("digit"), triton.InferRequestedOutput("probabilities", binary_data=False)]

    result = triton_client.infer("Digits", [image], outputs=wanted, headers=auth())

    assert result.as_numpy("digit").tolist() == [3]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (1, 10)
    assert int(np.argmax(probabilities[0])) == 3


def test_triton_errors_carry_the_servers_message(triton_client: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("petals", [1], "FP64")
    wrong.set_data_from_numpy(np.array([1.0]))

    with pytest.raises(InferenceServerException, match="Model Iris has no input 'petals'") as info:
        triton_client.infer("Iris", [wrong], headers=auth())

    assert info.value.status() == "400"
