"""The Open Inference Protocol routes on the Flask test client, with fixture handlers.

Binary bodies are built with tritonclient's own serializer and responses read with its
own `InferResult`, so the binary tensor data extension is checked against the client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from flask import Flask
from flask.testing import FlaskClient
from tritonclient.utils import serialize_byte_tensor

from serving.config.api_keys import parse_key_specs
from tests.conftest import FIXTURE_HANDLERS

HANDLERS = FIXTURE_HANDLERS / "protocols"
INFER = "/v2/models/Kinds/infer"


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=HANDLERS, predict_max_instances=4)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def _binary_body(document: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(document).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


def _outputs(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    length = response.headers.get("Inference-Header-Content-Length")
    result = triton.InferResult.from_response_body(response.get_data(), header_length=int(length) if length else None)
    return {output["name"]: result.as_numpy(output["name"]) for output in result.get_response()["outputs"]}


def test_metadata_maps_each_property_to_a_tensor(client: FlaskClient) -> None:
    body = client.get("/v2/models/Kinds").get_json()

    assert body["name"] == "Kinds"
    assert body["versions"] == ["0"]
    assert {t["name"]: (t["datatype"], t["shape"]) for t in body["inputs"]} == {
        "word": ("BYTES", [-1]),
        "blob": ("BYTES", [-1]),
        "count": ("INT64", [-1]),
        "weight": ("FP64", [-1]),
        "flag": ("BOOL", [-1]),
        "pair": ("FP64", [-1, 2]),
        "extra": ("BYTES", [-1]),
    }
    outputs = {t["name"]: (t["datatype"], t["shape"]) for t in body["outputs"]}
    assert outputs["letters"] == ("BYTES", [-1])  # an array of varying length is JSON text
    assert outputs["pair"] == ("FP64", [-1, 2])
    assert "unmappable" not in body


def test_json_tensors_in_and_out(client: FlaskClient) -> None:
    request = {
        "id": "req-1",
        "inputs": [
            _tensor("word", "BYTES", ["hi", "yo"]),
            _tensor("count", "INT32", [1, 2]),
            _tensor("weight", "FP32", [0.5, 1]),
            _tensor("flag", "BOOL", [True, False]),
            _tensor("pair", "FP64", [[1.0, 2.0], [3.0, 4.0]], [2, 2]),
            _tensor("extra", "BYTES", ['{"a": 1}', "{}"]),
            _tensor("blob", "BYTES", ["AAE=", "/w=="]),
        ],
    }

    body = client.post(INFER, json=request).get_json()

    assert (body["model_name"], body["model_version"], body["id"]) == ("Kinds", "0", "req-1")
    outputs = {o["name"]: (o["datatype"], o["shape"], o["data"]) for o in body["outputs"]}
    assert outputs["word"] == ("BYTES", [2], ["hi", "yo"])
    assert outputs["count"] == ("INT64", [2], [1, 2])
    assert outputs["weight"] == ("FP64", [2], [0.5, 1])
    assert outputs["flag"] == ("BOOL", [2], [True, False])
    assert outputs["pair"] == ("FP64", [2, 2], [1.0, 2.0, 3.0, 4.0])
    assert outputs["extra"] == ("BYTES", [2], ['{"a":1}', "{}"])
    assert outputs["blob"] == ("BYTES", [2], ["AAE=", "/w=="])  # raw bytes travel as base64 in JSON
    assert outputs["letters"] == ("BYTES", [2], ['["h","i"]', '["y","o"]'])


def test_binary_tensors_in_and_out_as_tritonclient_encodes_them(client: FlaskClient) -> None:
    words = serialize_byte_tensor(np.array([b"hi", "Zo\u00eb".encode()], dtype=np.object_)).item()
    blobs = serialize_byte_tensor(np.array([b"\x00\xff", b"\x89PNG"], dtype=np.object_)).item()
    counts = np.array([7, -1], dtype="<i8").tobytes()
    pairs = np.array([[1.5, 2.5], [3.5, 4.5]], dtype="<f4").tobytes()
    flags = np.array([True, False]).tobytes()
    tensors = [("word", "BYTES", [2], words), ("blob", "BYTES", [2], blobs), ("count", "INT64", [2], counts)]
    tensors += [("pair", "FP32", [2, 2], pairs), ("flag", "BOOL", [2], flags)]
    document = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(b)}} for n, d, s, b in tensors
        ],
        "parameters": {"binary_data_output": True},
    }
    data, headers = _binary_body(document, [b for *_, b in tensors])

    response = client.post(INFER, data=data, headers=headers, content_type="application/octet-stream")

    outputs = _outputs(response)
    assert response.mimetype == "application/octet-stream"
    assert outputs["word"].tolist() == [b"hi", "Zo\u00eb".encode()]
    assert outputs["blob"].tolist() == [b"\x00\xff", b"\x89PNG"]
    assert outputs["count"].tolist() == [7, -1]
    assert outputs["pair"].tolist() == [[1.5, 2.5], [3.5, 4.5]]
    assert outputs["flag"].tolist() == [True, False]


def test_outputs_select_which_tensors_come_back_and_how(client: FlaskClient) -> None:
    request = {
        "inputs": [_tensor("word", "BYTES", ["abc"]), _tensor("count", "INT64", [3])],
        "outputs": [{"name": "count", "parameters": {"binary_data": True}}, {"name": "letters"}],
    }

    outputs = _outputs(client.post(INFER, json=request))

    assert list(outputs) == ["count", "letters"]
    assert outputs["count"].tolist() == [3]
    assert outputs["letters"].tolist() == ['["a","b","c"]']  # JSON data: as text


def test_a_result_that_is_not_an_object_is_the_tensor_result(client: FlaskClient) -> None:
    assert client.get("/v2/models/Scalar").get_json()["outputs"] == [
        {"name": "result", "datatype": "FP64", "shape": [-1]}
    ]

    body = client.post("/v2/models/Scalar/infer", json={"inputs": [_tensor("x", "FP64", [1.5, 2])]}).get_json()

    assert body["outputs"] == [{"name": "result", "datatype": "FP64", "shape": [2], "data": [3.0, 4]}]


def test_an_unmappable_model_says_so_in_metadata_and_on_infer(client: FlaskClient) -> None:
    metadata = client.get("/v2/models/Unmappable").get_json()
    response = client.post("/v2/models/Unmappable/infer", json={"inputs": [_tensor("value", "INT64", [1])]})

    assert "input property 'value' cannot be a tensor" in metadata["unmappable"]
    assert metadata["inputs"] == []
    assert response.status_code == 400
    assert "input property 'value' cannot be a tensor" in response.get_json()["error"]


def _post(client: FlaskClient, request: Any, **kwargs: Any) -> Any:
    if isinstance(request, bytes):
        return client.post(INFER, data=request, **kwargs)
    return client.post(INFER, json=request, **kwargs)


_WORD = _tensor("word", "BYTES", ["a"])
_COUNT = _tensor("count", "INT64", [1])
_DEEP: Any = [1]
for _ in range(40):
    _DEEP = [_DEEP]


@pytest.mark.parametrize(
    ("request_body", "kwargs", "status", "message"),
    [
        pytest.param({"inputs": []}, {}, 400, 'JSON object with "inputs"', id="no-inputs"),
        pytest.param(b"{", {"content_type": "application/json"}, 400, "Malformed JSON", id="malformed"),
        pytest.param({"inputs": [_WORD, _COUNT, _tensor("nope", "FP64", [1])]}, {}, 400, "no input 'nope'", id="name"),
        pytest.param({"inputs": [_WORD, _COUNT, _COUNT]}, {}, 400, "given twice", id="twice"),
        pytest.param({"inputs": [_WORD]}, {}, 400, "needs input 'count'", id="missing"),
        pytest.param({"inputs": [_WORD, _tensor("count", "FP64", [1.0])]}, {}, 400, "INT64 or INT32", id="dtype"),
        pytest.param({"inputs": [_WORD, _tensor("count", "INT8", [1])]}, {}, 400, "'datatype' must be", id="int8"),
        pytest.param({"inputs": [_WORD, _tensor("count", "INT64", [1.5])]}, {}, 400, "not INT64 data", id="value"),
        pytest.param({"inputs": [_WORD, _tensor("count", "INT64", [1, 2])]}, {}, 400, "2 rows, the other", id="rows"),
        pytest.param({"inputs": [_WORD, _tensor("count", "INT64", [1], [2])]}, {}, 400, "holds 2 elements", id="count"),
        pytest.param(
            {"inputs": [_WORD, _tensor("count", "INT64", [1], [1, 1, 1])]}, {}, 400, "shape [1] or [1, 1]", id="shape"
        ),
        pytest.param(
            {"inputs": [_WORD, _COUNT, _tensor("pair", "FP64", [1.0, 2.0, 3.0], [1, 3])]},
            {},
            400,
            "shape [1, 2]",
            id="width",
        ),
        pytest.param({"inputs": [_WORD, {**_COUNT, "shape": [-1]}]}, {}, 400, "integers >= 0", id="negative"),
        pytest.param({"inputs": [_WORD, {**_COUNT, "shape": [0], "data": []}]}, {}, 400, ">= 1", id="zero-rows"),
        pytest.param({"inputs": [{"name": "word", "datatype": "BYTES", "shape": [1]}]}, {}, 400, "no 'data'", id="nd"),
        pytest.param(
            {"inputs": [_tensor("word", "BYTES", ["a"] * 5), _tensor("count", "INT64", [1] * 5)]},
            {},
            413,
            "at most 4 are accepted",
            id="too-many",
        ),
        pytest.param(
            {"inputs": [_WORD, _COUNT, _tensor("extra", "BYTES", ["{"])]}, {}, 400, "not a JSON document", id="json"
        ),
        pytest.param(
            {"inputs": [_WORD, _COUNT, _tensor("extra", "BYTES", ["[1]"])]}, {}, 400, "row 0: [1] is not", id="schema"
        ),
        pytest.param({"inputs": [_WORD, _COUNT], "outputs": [{"name": "x"}]}, {}, 400, "no output 'x'", id="output"),
        pytest.param(
            {"inputs": [_WORD, {**_COUNT, "data": _DEEP}]},
            {},
            400,
            "nested deeper",
            id="deep",
        ),
        pytest.param(
            {"inputs": [_WORD, _COUNT]},
            {"headers": {"Content-Encoding": "gzip"}},
            415,
            "Content-Encoding 'gzip'",
            id="gzip",
        ),
        pytest.param(
            {"inputs": [_WORD, _COUNT]},
            {"headers": {"Inference-Header-Content-Length": "99999"}},
            400,
            "length of the JSON part",
            id="header-length",
        ),
    ],
)
def test_bad_infer_requests_name_the_problem(
    client: FlaskClient, request_body: Any, kwargs: dict[str, Any], status: int, message: str
) -> None:
    response = _post(client, request_body, **kwargs)

    assert response.status_code == status
    body = response.get_json()
    assert message in body["error"]
    assert body["error"] == body["message"]


@pytest.mark.parametrize(
    ("tensor", "blob", "message"),
    [
        pytest.param(("count", "INT64", [1]), b"\x01\x00", "not a whole number of INT64", id="short-int"),
        pytest.param(("word", "BYTES", [1]), b"\x05\x00\x00\x00ab", "ends inside an element", id="short-bytes"),
        pytest.param(("word", "BYTES", [1]), b"\x05\x00", "4-byte length", id="short-length"),
        pytest.param(("word", "BYTES", [1]), b"\x02\x00\x00\x00\xff\xfe", "not UTF-8 text", id="not-utf8"),
    ],
)
def test_bad_binary_tensors_name_the_problem(
    client: FlaskClient, tensor: tuple[str, str, list[int]], blob: bytes, message: str
) -> None:
    name, datatype, shape = tensor
    binary = {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(blob)}}
    others = [t for t in (_WORD, _COUNT) if t["name"] != name]
    data, headers = _binary_body({"inputs": [binary, *others]}, [blob])

    response = client.post(INFER, data=data, headers=headers)

    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_bytes_after_the_json_that_belong_to_no_input_are_refused(client: FlaskClient) -> None:
    data, headers = _binary_body({"inputs": [_WORD, _COUNT]}, [b"extra"])

    response = client.post(INFER, data=data, headers=headers)

    assert response.status_code == 400
    assert "belong to no input" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/Kinds/versions/0", 200),
        ("/v2/models/Kinds/versions/9", 404),
        ("/v2/models/Kinds/versions/9/ready", 404),
        ("/v2/models/Nope", 404),
        ("/v2/models/Nope/ready", 404),
        ("/v2/nothing/here", 404),
    ],
)
def test_versions_and_unknown_paths(client: FlaskClient, path: str, status: int) -> None:
    response = client.get(path)

    assert response.status_code == status
    if status != 200:
        assert isinstance(response.get_json()["error"], str)


def test_a_versioned_infer_serves_the_same_model(client: FlaskClient) -> None:
    request = {"inputs": [_WORD, _COUNT], "outputs": [{"name": "count"}]}

    served = client.post("/v2/models/Kinds/versions/0/infer", json=request)
    other = client.post("/v2/models/Kinds/versions/1/infer", json=request)

    assert served.get_json()["outputs"][0]["data"] == [1]
    assert other.status_code == 404


def test_server_health_metadata_and_model_readiness(client: FlaskClient) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2").get_json()["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/models/Kinds/ready").get_json() == {"name": "Kinds", "ready": True}


def test_a_model_that_failed_to_load_is_not_ready(fixture_client: FlaskClient) -> None:
    model = fixture_client.get("/v2/models/FailingSetup/ready")
    server = fixture_client.get("/v2/health/ready")

    assert model.status_code == 503
    assert model.get_json()["ready"] is False
    assert "FailingSetup is failed" in model.get_json()["error"]
    assert server.status_code == 503
    assert server.get_json()["ready"] is False


def test_api_keys_guard_models_but_not_health(make_app: Callable[..., Flask]) -> None:
    keys = tuple(parse_key_specs("k:secret-0123456789abcdef"))
    client = make_app(handlers_dir=HANDLERS, api_keys=keys).test_client()

    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    refused = client.get("/v2/models/Kinds")
    assert refused.status_code == 401
    assert "Missing API key" in refused.get_json()["error"]
    allowed = client.get("/v2/models/Kinds", headers={"Authorization": "Bearer secret-0123456789abcdef"})
    assert allowed.status_code == 200
