"""The OpenAPI document lists the form and raw bodies of POST /v1/<Model> beside JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from tests.conftest import FIXTURE_HANDLERS


@pytest.fixture
def project_doc(make_app: Callable[..., Flask]) -> dict[str, Any]:
    document: dict[str, Any] = make_app(model_loading="lazy").test_client().get("/openapi.json").get_json()
    return document


@pytest.fixture
def fixture_doc(make_app: Callable[..., Flask]) -> dict[str, Any]:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "uploads")
    document: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
    return document


def _content(document: dict[str, Any], model: str) -> dict[str, Any]:
    content: dict[str, Any] = document["paths"][f"/v1/{model}"]["post"]["requestBody"]["content"]
    return content


def test_digits_takes_a_file_in_a_form_or_as_the_body(project_doc: dict[str, Any]) -> None:
    content = _content(project_doc, "Digits")

    assert list(content) == ["application/json", "multipart/form-data", "image/*", "application/octet-stream"]
    form = content["multipart/form-data"]["schema"]
    assert form["required"] == ["image"]
    assert form["additionalProperties"] is False
    assert form["properties"]["image"] | {"description": ""} == {
        "type": "string",
        "format": "binary",
        "contentMediaType": "application/octet-stream",
        "description": "",
    }
    assert content["image/*"]["schema"] == {"type": "string", "format": "binary"}


@pytest.mark.parametrize(("model", "fields"), [("Iris", 4), ("XXXModel", 1)])
def test_models_without_files_take_text_fields_but_no_raw_body(
    project_doc: dict[str, Any], model: str, fields: int
) -> None:
    content = _content(project_doc, model)

    assert list(content) == ["application/json", "multipart/form-data"]
    properties = content["multipart/form-data"]["schema"]["properties"]
    assert len(properties) == fields
    assert all("contentMediaType" not in schema for schema in properties.values())


def test_a_declared_file_type_is_the_part_encoding_the_raw_type_and_a_415(fixture_doc: dict[str, Any]) -> None:
    content = _content(fixture_doc, "Scan")
    operation = fixture_doc["paths"]["/v1/Scan"]["post"]

    assert content["multipart/form-data"]["encoding"] == {"page": {"contentType": "image/png"}}
    assert content["multipart/form-data"]["schema"]["properties"]["count"] == {"type": "integer"}
    assert content["image/png"]["schema"]["contentMediaType"] == "image/png"
    assert "application/octet-stream" in content
    assert "415" in operation["responses"]
    assert "415" not in fixture_doc["paths"]["/v1/Pair"]["post"]["responses"]


def test_two_required_files_take_a_form_only_and_a_non_object_input_json_only(fixture_doc: dict[str, Any]) -> None:
    assert list(_content(fixture_doc, "Pair")) == ["application/json", "multipart/form-data"]
    assert list(_content(fixture_doc, "Listing")) == ["application/json"]


def test_the_documents_stay_valid_openapi_3_1(project_doc: dict[str, Any], fixture_doc: dict[str, Any]) -> None:
    validate(project_doc)
    validate(fixture_doc)
