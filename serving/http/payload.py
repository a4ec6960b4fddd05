"""A model's input from the request body, in whichever form the client sent it.

- `application/json` (or `+json`): the JSON document, read strictly (serving/http/body.py);
- `multipart/form-data`: the parts, as the JSON form would give them (serving/http/forms.py);
- a raw body (`image/*`, `application/octet-stream`, or the declared `contentMediaType`)
  for a model whose one required property is binary: `{property: base64 of the body}`.

Every other body is the tutorial's `400 {"message": "No JSON object"}`, exactly as before.
Handlers see the same payload whichever form was sent, so none of them changes.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from flask import Request

from serving.errors import EmptyBody, PayloadTooLarge, UnsupportedMediaType
from serving.http.body import is_json_mimetype, read_body, read_json, read_json_body
from serving.http.form_schema import OCTET_STREAM, FormSchema, media_type_matches, shown
from serving.http.forms import FormLimits, read_form
from serving.http.state import get_state
from serving.runtime.validation import json_path

MULTIPART = "multipart/form-data"


def form_limits() -> FormLimits:
    """The form limits of the app handling the request, from its settings."""
    settings = get_state().settings
    return FormLimits(
        max_parts=settings.form_max_parts,
        max_field_bytes=settings.form_max_field_bytes,
        spool_bytes=settings.upload_spool_bytes,
        spool_dir=settings.upload_spool_dir,
    )


def read_input(request: Request, schema: Mapping[str, Any]) -> Any:
    """The request's input for a model whose input schema is `schema`, before validation."""
    if is_json_mimetype(request):
        return read_json_body(request)
    form = FormSchema.of(schema)
    if form is not None:
        if request.mimetype == MULTIPART:
            return read_form(request, form, form_limits())
        if _takes_raw_body(form, request.mimetype):
            return read_raw_body(request, form)
    return read_json(request)  # the tutorial's "No JSON object"


def _takes_raw_body(form: FormSchema, media_type: str) -> bool:
    """Whether a raw body of `media_type` fills the model's binary property; 415 for the wrong image type."""
    name = form.raw_property
    if name is None or not media_type:
        return False
    declared = form.binary[name]
    if media_type_matches(OCTET_STREAM, media_type):
        return True
    if declared is not None and media_type_matches(declared, media_type):
        return True
    if media_type_matches("image/*", media_type):
        if declared is None:
            return True
        raise UnsupportedMediaType(
            f"The body is {media_type}, but this model's {shown(name)} takes {declared}", path=json_path("$", name)
        )
    return False


def read_raw_body(request: Request, form: FormSchema) -> dict[str, str]:
    """`{property: base64 of the body}` for the model's one required binary property."""
    name = form.raw_property
    if name is None:  # only called when _takes_raw_body said yes
        raise EmptyBody()
    limit = form.max_file_bytes(name)
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The body is over the {limit} bytes this model accepts", path=json_path("$", name))
    data = read_body(request)
    if not data:
        raise EmptyBody(f"The request body is empty: send the file's bytes as {shown(name)}", path=json_path("$", name))
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(f"The body is over the {limit} bytes this model accepts", path=json_path("$", name))
    return {name: binascii.b2a_base64(data, newline=False).decode("ascii")}
