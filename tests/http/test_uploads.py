"""multipart/form-data and raw binary bodies on POST /v1/<Model>, through Flask's test client.

The same payload as the JSON form, the conversion of text parts by schema type, and a
table of hostile bodies: each a 4xx JSON error naming the field, with no temporary file
left open or on disk afterwards.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.http.forms import FormLimits, _FilePart
from tests.conftest import FIXTURE_HANDLERS
from tests.servers import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / "models" / "digits" / "samples"
THREE = (SAMPLES / "3.png").read_bytes()
SEVEN = (SAMPLES / "7.png").read_bytes()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16  # what Scan echoes back, not a real image
BOUNDARY = "xYzZY"
LIMIT = 256 * 1024  # MAX_REQUEST_BYTES of the fixture app
FIELD_LIMIT = 128 * 1024  # FORM_MAX_FIELD_BYTES of the fixture app


def multipart(*parts: tuple[str, bytes], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A multipart body from (headers, data) pairs, each headers a CRLF-joined block."""
    body = b"".join(b"--%s\r\n%s\r\n\r\n%s\r\n" % (boundary.encode(), head.encode(), data) for head, data in parts)
    return body + (b"--%s--\r\n" % boundary.encode() if close else b"")


def text(name: str, value: bytes | str, extra: str = "") -> tuple[str, bytes]:
    data = value.encode() if isinstance(value, str) else value
    return f'Content-Disposition: form-data; name="{name}"{extra}', data


def file(name: str, data: bytes, media_type: str = "image/png", filename: str = "page.png") -> tuple[str, bytes]:
    return f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: {media_type}', data


FORM = f"multipart/form-data; boundary={BOUNDARY}"


def open_files_under(directory: Path) -> list[str]:
    """Files this process holds open under `directory` (spooled parts, even unnamed ones)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    """The spool directory; after the test, nothing may be in it or open in it."""
    directory = tmp_path / "spool"
    directory.mkdir()
    yield directory
    assert list(directory.iterdir()) == []
    if Path("/proc/self/fd").is_dir():
        assert open_files_under(directory) == []


@pytest.fixture
def uploads(make_app: Callable[..., Flask], spool: Path) -> FlaskClient:
    """The upload fixture handlers (Scan, Pair, Listing), file parts over 64 bytes spooled to disk."""
    app = make_app(
        handlers_dir=FIXTURE_HANDLERS / "uploads",
        max_request_bytes=LIMIT,
        form_max_field_bytes=FIELD_LIMIT,
        form_max_parts=20,
        upload_spool_bytes=64,
        upload_spool_dir=spool,
    )
    return app.test_client()


@pytest.fixture
def project(make_app: Callable[..., Flask], spool: Path) -> FlaskClient:
    """The project's handlers (Digits, Iris, XXXModel), loaded on first use."""
    return make_app(
        model_loading="lazy", upload_spool_bytes=64, upload_spool_dir=spool, form_max_parts=50
    ).test_client()


def assert_error(response: Any, status: int, code: str, path: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert body["code"] == code
    assert body["message"]
    assert "Traceback" not in body["message"]
    if path is not None:
        assert body["path"] == path
    return body


# --- the project's models, as a user would call them ---


@pytest.mark.parametrize(("image", "digit"), [(THREE, 3), (SEVEN, 7)], ids=["three", "seven"])
def test_digits_from_a_file_part_a_raw_body_and_json_agree(project: FlaskClient, image: bytes, digit: int) -> None:
    as_json = project.post("/v1/Digits", json={"image": base64.b64encode(image).decode()})
    as_file = project.post("/v1/Digits", data={"image": (io.BytesIO(image), "digit.png", "image/png")})
    as_png = project.post("/v1/Digits", data=image, content_type="image/png")
    as_octets = project.post("/v1/Digits", data=image, content_type="application/octet-stream")

    assert as_json.status_code == 200
    assert as_json.get_json()["result"]["digit"] == digit
    for response in (as_file, as_png, as_octets):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json() == as_json.get_json()


def test_iris_and_xxxmodel_from_text_fields(project: FlaskClient) -> None:
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}

    iris = project.post("/v1/Iris", data={k: str(v) for k, v in flower.items()}, content_type="multipart/form-data")
    greeting = project.post("/v1/XXXModel", data={"name": "Leo"}, content_type="multipart/form-data")

    assert iris.status_code == 200
    assert iris.get_json() == project.post("/v1/Iris", json=flower).get_json()
    assert greeting.get_json() == {"result": "Hello, Leo!"}


def test_a_form_gets_the_same_validation_errors_as_json(project: FlaskClient) -> None:
    form = project.post("/v1/Iris", data={"sepal_length": "5.1"}, content_type="multipart/form-data")
    as_json = project.post("/v1/Iris", json={"sepal_length": 5.1})

    assert form.status_code == as_json.status_code == 400
    assert {k: v for k, v in form.get_json().items() if k != "request_id"} == {
        k: v for k, v in as_json.get_json().items() if k != "request_id"
    }


@pytest.mark.parametrize(
    ("model", "content_type"),
    [
        ("XXXModel", "image/png"),  # no binary input
        ("Iris", "application/octet-stream"),
        ("Digits", "text/plain"),  # not a file's media type
        ("Digits", "application/x-www-form-urlencoded"),
        ("Digits", ""),
    ],
)
def test_every_other_non_json_body_is_still_no_json_object(project: FlaskClient, model: str, content_type: str) -> None:
    response = project.post(f"/v1/{model}", data=THREE, content_type=content_type)

    assert response.status_code == 400
    assert response.get_json()["message"] == "No JSON object"
    assert response.get_json()["code"] == "no_json"


# --- conversion of text parts by the schema's type ---


@pytest.mark.parametrize(
    ("field", "sent", "received"),
    [
        ("count", "5", 5),
        ("count", " 12 ", 12),
        ("ratio", "0.25", 0.25),
        ("ratio", "3", 3),
        ("flag", "true", True),
        ("flag", "false", False),
        ("flag", "on", True),  # an HTML checkbox
        ("tags", '["a", "b"]', ["a", "b"]),
        ("meta", '{"k": [1, 2]}', {"k": [1, 2]}),
        ("note", "5", "5"),  # a string stays a string
        ("note", " spaced ", " spaced "),
        ("limit", "null", None),
        ("limit", "7", 7),
    ],
)
def test_text_parts_take_the_type_their_property_declares(
    uploads: FlaskClient, field: str, sent: str, received: Any
) -> None:
    response = uploads.post("/v1/Scan", data=multipart(file("page", PNG), text(field, sent)), content_type=FORM)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["result"] == {"page_bytes": PNG.hex(), "fields": {field: received}}


@pytest.mark.parametrize(
    ("field", "sent", "code", "message"),
    [
        ("count", "abc", "invalid_input", "'abc' is not of type 'integer'"),
        ("count", "1.5", "invalid_input", "1.5 is not of type 'integer'"),
        ("ratio", "1e999", "invalid_input", "'1e999' is not of type 'number'"),
        ("flag", "yes", "invalid_input", "'yes' is not of type 'boolean'"),
        ("tags", '{"a": 1}', "invalid_input", "{'a': 1} is not of type 'array'"),
        ("meta", "{", "malformed_json", "Form field 'meta' is not valid JSON"),
        ("meta", '{"a": 1, "a": 2}', "malformed_json", "duplicate key 'a'"),
    ],
)
def test_a_text_part_that_is_not_its_type_is_a_400_naming_it(
    uploads: FlaskClient, field: str, sent: str, code: str, message: str
) -> None:
    response = uploads.post("/v1/Scan", data=multipart(file("page", PNG), text(field, sent)), content_type=FORM)

    body = assert_error(response, 400, code, f"$.{field}")
    assert message in body["message"]


def test_repeated_parts_are_the_items_of_an_array(uploads: FlaskClient) -> None:
    body = multipart(file("page", PNG), text("tags", "a"), text("tags", "[1]"), text("tags", "c"))

    response = uploads.post("/v1/Scan", data=body, content_type=FORM)

    assert response.get_json()["result"]["fields"] == {"tags": ["a", "[1]", "c"]}


def test_repeated_parts_of_a_field_an_open_schema_allows_are_a_list(project: FlaskClient) -> None:
    body = multipart(text("name", "Leo"), text("extra", "1"), text("extra", "2"))

    response = project.post("/v1/XXXModel", data=body, content_type=FORM)

    assert response.get_json() == {"result": "Hello, Leo!"}


def test_a_blank_field_of_a_non_string_property_is_absent(uploads: FlaskClient) -> None:
    body = multipart(file("page", PNG), text("count", ""), text("ratio", " "), text("note", ""))

    response = uploads.post("/v1/Scan", data=body, content_type=FORM)

    assert response.get_json()["result"]["fields"] == {"note": ""}


def test_a_binary_property_may_come_as_base64_text(uploads: FlaskClient) -> None:
    response = uploads.post("/v1/Scan", data=multipart(text("page", base64.b64encode(PNG))), content_type=FORM)

    assert response.get_json()["result"]["page_bytes"] == PNG.hex()


def test_a_browser_file_input_left_empty_is_an_absent_field(uploads: FlaskClient) -> None:
    body = multipart(file("page", b"", "application/octet-stream", filename=""), text("note", "x"))

    response = uploads.post("/v1/Scan", data=body, content_type=FORM)

    assert assert_error(response, 400, "invalid_input")["message"] == "'page' is a required property"


def test_a_file_spooled_to_disk_gives_the_same_payload(uploads: FlaskClient) -> None:
    page = PNG + bytes(range(256))  # over the fixture's 64 spooled bytes, under its 300-byte limit

    response = uploads.post("/v1/Scan", data=multipart(file("page", page)), content_type=FORM)

    assert response.get_json()["result"]["page_bytes"] == page.hex()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc to see open files")
def test_a_file_part_is_on_disk_past_the_threshold_and_gone_when_closed(spool: Path) -> None:
    limits = FormLimits(max_parts=5, max_field_bytes=FIELD_LIMIT, spool_bytes=64, spool_dir=spool)
    small, large = _FilePart("a", "a.png", None, limits), _FilePart("b", "b.png", None, limits)

    small.write(b"x" * 64)
    large.write(b"x" * 65)
    on_disk = open_files_under(spool)
    encoded = large.base64()
    small.close()
    large.close()

    assert len(on_disk) == 1  # only the part past the threshold
    assert base64.b64decode(encoded) == b"x" * 65


# --- raw bodies ---


def test_a_raw_body_of_the_declared_type_fills_the_binary_property(uploads: FlaskClient) -> None:
    png = uploads.post("/v1/Scan", data=PNG, content_type="image/png")
    octets = uploads.post("/v1/Scan", data=PNG, content_type="application/octet-stream")

    assert png.get_json()["result"] == octets.get_json()["result"] == {"page_bytes": PNG.hex(), "fields": {}}


@pytest.mark.parametrize(
    ("model", "body", "content_type", "status", "code", "path"),
    [
        pytest.param("Scan", PNG, "image/jpeg", 415, "unsupported_media_type", "$.page", id="other-image-type"),
        pytest.param("Scan", b"", "image/png", 400, "empty_body", "$.page", id="empty"),
        pytest.param("Scan", b"x" * 301, "image/png", 413, "payload_too_large", "$.page", id="over-maxLength"),
        pytest.param("Scan", b"x" * (LIMIT + 1), "image/png", 413, "payload_too_large", None, id="over-limit"),
        pytest.param("Pair", PNG, "image/png", 400, "no_json", None, id="two-required-files"),
        pytest.param("Listing", PNG, "application/octet-stream", 400, "no_json", None, id="not-an-object"),
        pytest.param("Scan", PNG, "text/plain", 400, "no_json", None, id="text"),
    ],
)
def test_raw_bodies_a_model_cannot_take(
    uploads: FlaskClient, model: str, body: bytes, content_type: str, status: int, code: str, path: str | None
) -> None:
    response = uploads.post(f"/v1/{model}", data=body, content_type=content_type)

    assert_error(response, status, code, path)


# --- hostile multipart bodies ---

_MANY = multipart(*(text(f"f{i}", "x") for i in range(2000)))
HOSTILE = [
    pytest.param(
        "Scan",
        multipart(file("page", PNG)),
        "multipart/form-data",
        400,
        "malformed_form",
        "Content-Type",
        id="no-boundary",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG)),
        "multipart/form-data; boundary=" + "b" * 71,
        400,
        "malformed_form",
        "Content-Type",
        id="boundary-too-long",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG)),
        'multipart/form-data; boundary="a\\"b"',
        400,
        "malformed_form",
        "Content-Type",
        id="boundary-bad-characters",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG), boundary="other"),
        FORM,
        400,
        "malformed_form",
        None,
        id="boundary-not-in-body",
    ),
    pytest.param(
        "Scan", multipart(file("page", PNG), close=False), FORM, 400, "malformed_form", None, id="no-closing-boundary"
    ),
    pytest.param(
        "Scan", multipart(file("page", PNG))[:-30], FORM, 400, "malformed_form", "$.page", id="truncated-inside-a-file"
    ),
    pytest.param(
        "Scan",
        b"--"
        + BOUNDARY.encode()
        + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--"
        + BOUNDARY.encode()
        + b"--\r\n",
        FORM,
        400,
        "malformed_form",
        None,
        id="part-without-name",
    ),
    pytest.param(
        "Scan",
        b"--" + BOUNDARY.encode() + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY.encode() + b"--\r\n",
        FORM,
        400,
        "malformed_form",
        None,
        id="part-without-disposition",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG), text("note", "a"), text("note", "b")),
        FORM,
        400,
        "duplicate_field",
        "$.note",
        id="duplicate-field",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG), file("page", PNG)),
        FORM,
        400,
        "duplicate_field",
        "$.page",
        id="duplicate-file",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG), file("note", b"x", "text/plain")),
        FORM,
        400,
        "unexpected_file",
        "$.note",
        id="file-for-a-text-field",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG), text("extra", "x")),
        FORM,
        400,
        "unknown_field",
        "$.extra",
        id="unknown-field",
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG, "image/jpeg")),
        FORM,
        415,
        "unsupported_media_type",
        "$.page",
        id="wrong-media-type",
    ),
    pytest.param(
        "Scan", multipart(file("page", b"x" * 301)), FORM, 413, "payload_too_large", "$.page", id="file-over-maxLength"
    ),
    pytest.param(
        "Scan",
        multipart(file("page", PNG), text("note", "y" * (FIELD_LIMIT + 1))),
        FORM,
        413,
        "payload_too_large",
        "$.note",
        id="huge-text-part",
    ),
    pytest.param(
        "Scan", multipart(text("note", b"\xff\xfe")), FORM, 400, "malformed_form", "$.note", id="text-not-utf8"
    ),
    pytest.param(
        "Scan", multipart(file("page", b"x" * (LIMIT + 10))), FORM, 413, "payload_too_large", None, id="body-over-limit"
    ),
    pytest.param(
        "Scan",
        b"--"
        + BOUNDARY.encode()
        + b'\r\nContent-Disposition: form-data; name="n\xff"\r\n\r\nx\r\n--'
        + BOUNDARY.encode()
        + b"--\r\n",
        FORM,
        400,
        "malformed_form",
        None,
        id="headers-not-utf8",
    ),
    pytest.param("Pair", _MANY, FORM, 413, "too_many_parts", None, id="thousands-of-parts"),
    pytest.param(
        "Pair",
        multipart(file("left", b"x"), text("label", b"\xff")),
        FORM,
        400,
        "malformed_form",
        "$.label",
        id="label-not-utf8",
    ),
]


@pytest.mark.parametrize(("model", "body", "content_type", "status", "code", "path"), HOSTILE)
def test_hostile_multipart_bodies_are_clean_4xx_naming_the_field(
    uploads: FlaskClient, model: str, body: bytes, content_type: str, status: int, code: str, path: str | None
) -> None:
    response = uploads.post(f"/v1/{model}", data=body, content_type=content_type)

    assert_error(response, status, code, path)


def test_a_model_whose_input_is_not_an_object_reads_no_form(uploads: FlaskClient) -> None:
    response = uploads.post("/v1/Listing", data=multipart(text("x", "1")), content_type=FORM)

    assert_error(response, 400, "no_json")


# --- the asynchronous path ---


def test_a_file_submitted_as_a_job_runs_with_the_same_payload(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "uploads", jobs_data_dir=tmp_path / "jobs", jobs_workers=1)
    client = app.test_client()

    submitted = client.post(
        "/v1/Scan",
        data=multipart(file("page", PNG), text("count", "3")),
        content_type=FORM,
        headers={"Prefer": "respond-async"},
    )
    assert submitted.status_code == 202, submitted.get_data(as_text=True)
    location = submitted.headers["Location"]
    deadline = time.monotonic() + 20
    job = client.get(location).get_json()
    while job["status"] not in ("succeeded", "failed", "canceled") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(location).get_json()

    assert job["status"] == "succeeded", job
    assert job["result"] == {"page_bytes": PNG.hex(), "fields": {"count": 3}}


def test_a_bad_form_never_becomes_a_job(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "uploads", jobs_data_dir=tmp_path / "jobs")

    response = app.test_client().post(
        "/v1/Scan",
        data=multipart(file("page", PNG), text("extra", "x")),
        content_type=FORM,
        headers={"Prefer": "respond-async"},
    )

    assert_error(response, 400, "unknown_field", "$.extra")
