"""Reading a request's JSON body strictly, with a 400 for anything that is not JSON.

Flask's `request.get_json()` accepts NaN and Infinity, keeps the last of duplicate keys,
and answers a deeply nested document with `RecursionError` (a 500). Model inputs deserve
better: this parser rejects each of those with a `MalformedJson` whose message says why.

It also refuses a string holding a lone surrogate (`"\\ud800"`): valid JSON, which
Python's decoder turns into a `str` that no UTF-8 encoder, tokenizer or logger takes,
so it would fail deep in a model or an encoder as a 500. Every JSON body (each route,
the v2 JSON part, JSON form fields) comes through `parse_json_bytes`, so this is the one
place that refuses them, with a 400 naming the field. (orjson refuses them too, but
cannot make the checks above.)
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from flask import Request
from werkzeug.wsgi import get_content_length

from serving.errors import MalformedJson, NoJsonObject, PayloadTooLarge
from serving.runtime.request_scope import body_arrived

# Python refuses to convert integers with more digits than this (CVE-2020-10735); say so
# as a 400 instead of a ValueError deep in the decoder.
_MAX_INT_DIGITS = 4300
# A \u escape of a UTF-16 surrogate (D800-DFFF). Paired ones decode to one character;
# only when the text has any is the document walked to find a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _reject_constant(name: str) -> NoReturn:
    raise MalformedJson(f"Malformed JSON: {name} is not valid JSON")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedJson(f"Malformed JSON: duplicate key {key!r}")
        result[key] = value
    return result


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise MalformedJson(f"Malformed JSON: integer with more than {_MAX_INT_DIGITS} digits")
    return int(text)


# One decoder for every body: `json.loads` with hooks builds a new one (and its scanner)
# per call. Sharing it across threads is safe, as `json.loads`' own default decoder is.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant,
    object_pairs_hook=_reject_duplicates,
    parse_int=_parse_int,
)


def is_json_mimetype(request: Request) -> bool:
    """True when the request declares a JSON body (`application/json` or `+json`)."""
    return request.is_json


def parse_json_bytes(data: bytes) -> Any:
    """Decode a JSON document strictly; raises `MalformedJson` saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJson(f"Malformed JSON: body is not valid UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        if text.startswith("\ufeff"):  # a second BOM: what `json.loads` says of it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        document = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"Malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        # The C decoder guards its recursion and unwinds cleanly: a hostile 100 000-deep
        # document costs one failed parse, not a crashed worker.
        raise MalformedJson("Malformed JSON: nested too deeply") from None
    except ValueError as exc:
        raise MalformedJson(f"Malformed JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(document)
    return document


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate_at(document: Any) -> str | None:
    """The JSONPath of a key or string in `document` that is not Unicode text, or None."""
    stack: list[tuple[Any, str]] = [(document, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _is_text(key):
                    return f"{path} (a key)"
                stack.append((item, f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
    return None


def _refuse_lone_surrogates(document: Any) -> None:
    path = _lone_surrogate_at(document)
    if path is not None:
        path = path[:200]
        raise MalformedJson(
            f"Malformed JSON: the string at {path} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape "
            "without its pair), which is not Unicode text",
            path=path,
        )


def read_body(request: Request) -> bytes:
    """The request body; `PayloadTooLarge` (413) when it is over the app's limit.

    A chunked body has no Content-Length for Werkzeug to check up front, and Werkzeug
    stops reading such a body at the limit without saying so: a body cut short there
    must be a 413, not a parse error (or, worse, a valid JSON prefix).
    """
    data = request.get_data(cache=True)
    environ = request.environ
    # `request.content_length`, from the environ directly; only a body without a length can
    # have been cut short, and only then is the limit looked up (in the app's config).
    if get_content_length(environ) is None:
        limit = request.max_content_length
        if limit is not None and len(data) >= limit and environ["wsgi.input"].read(1):
            raise PayloadTooLarge("Request body too large")
    body_arrived()  # the request's time budget starts now
    return data


def read_json(request: Request) -> Any:
    """The request's JSON body; `NoJsonObject` when there is none, as in the tutorial."""
    if not is_json_mimetype(request):
        raise NoJsonObject()
    return read_json_body(request)


def read_json_body(request: Request) -> Any:
    """`read_json` for a request already known to declare a JSON body."""
    data = read_body(request)
    if not data.strip():
        raise NoJsonObject()
    return parse_json_bytes(data)
