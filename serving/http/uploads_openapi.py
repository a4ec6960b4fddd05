"""The OpenAPI description of a model's non-JSON request bodies: forms and raw files.

`describe_uploads` adds, beside `application/json`, the `multipart/form-data` form of the
input (a binary property as a file: `contentMediaType`, and `format: binary` for tools
still on OpenAPI 3.0's convention; Swagger UI shows a file picker for either), and the
raw media types a model with one required binary input takes (serving/http/payload.py).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from serving.http.form_schema import OCTET_STREAM, FormSchema
from serving.http.payload import MULTIPART

_UNSUPPORTED = {
    "description": "A file (part or raw body) of a media type the model's input does not declare.",
    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _file_schema(media_type: str | None) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "binary",
        "contentMediaType": media_type or OCTET_STREAM,
        "description": "The file itself: its bytes, not base64" + (f" ({media_type})." if media_type else "."),
    }


def _raw_schema(media_type: str) -> dict[str, Any]:
    described = {"type": "string", "format": "binary"}
    if not media_type.endswith("/*"):  # a range such as image/* is not a media type
        described["contentMediaType"] = media_type
    return described


def form_schema(input_schema: Mapping[str, Any], form: FormSchema) -> dict[str, Any]:
    """The JSON Schema of the `multipart/form-data` body: the input's, its binary properties as files."""
    properties = {
        name: _file_schema(form.binary[name]) if name in form.binary else copy.deepcopy(dict(schema))
        for name, schema in form.properties.items()
    }
    described: dict[str, Any] = {"type": "object", "properties": properties}
    if isinstance(input_schema.get("required"), list):
        described["required"] = list(input_schema["required"])
    if not form.open:
        described["additionalProperties"] = False
    return described


def upload_media_types(input_schema: Mapping[str, Any]) -> dict[str, Any]:
    """The request-body media types a model takes besides JSON, for its embedded `input_schema`."""
    form = FormSchema.of(input_schema)
    if form is None:
        return {}
    media: dict[str, Any] = {MULTIPART: {"schema": form_schema(input_schema, form)}}
    encoding = {name: {"contentType": media_type} for name, media_type in form.binary.items() if media_type}
    if encoding:
        media[MULTIPART]["encoding"] = encoding
    for media_type in form.raw_media_types():
        media[media_type] = {"schema": _raw_schema(media_type)}
    return media


def describe_uploads(operation: dict[str, Any], input_schema: Mapping[str, Any]) -> None:
    """Add the form and raw bodies (and the 415 of a declared file type) to a `POST /v1/<Model>` operation."""
    operation["requestBody"]["content"].update(upload_media_types(input_schema))
    form = FormSchema.of(input_schema)
    if form is not None and any(form.binary.values()):
        operation["responses"]["415"] = copy.deepcopy(_UNSUPPORTED)
