"""Reading a `multipart/form-data` body into the payload the JSON form of the request would give.

A file part fills a binary property as its base64 string (so handlers see exactly what a
JSON client would send); a text part fills any other property, converted by the
property's JSON type: `integer`/`number`/`boolean`/`null` from their JSON spelling, an
`object` or `array` from JSON text, anything else as the string it is. Several parts of
one array property are its items, each converted by the `items` schema. The result then
goes through the same schema validation as a JSON body.

Werkzeug's streaming decoder (`werkzeug.sansio.multipart.MultipartDecoder`) parses the
body with Werkzeug's own limits (`max_form_memory_size`, `max_parts`: FORM_MAX_FIELD_BYTES
and FORM_MAX_PARTS), reading `request.stream`, which Werkzeug bounds by MAX_REQUEST_BYTES.
The loop over its events is ours rather than `request.form`/`request.files` because every
refusal must name its field (Werkzeug raises a bare 413 or `ValueError`), because a
duplicate, unknown or misplaced field is refused when its headers arrive instead of after
its bytes, and because a file part spooled to disk is closed (so deleted) before the
request ends, whatever goes wrong.
"""

from __future__ import annotations

import binascii
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import Request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from serving.errors import (
    DuplicateField,
    MalformedForm,
    MalformedJson,
    PayloadTooLarge,
    TooManyParts,
    UnexpectedFile,
    UnknownField,
    UnsupportedMediaType,
)
from serving.http.body import parse_json_bytes
from serving.http.form_schema import FormSchema, schema_types, shown
from serving.runtime.validation import json_path

# RFC 2046 section 5.1.1: 1 to 70 of these characters, the last not a space.
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
# Werkzeug decodes text parts in these charsets only; anything else is read as UTF-8.
_CHARSETS = frozenset({"ascii", "us-ascii", "utf-8", "iso-8859-1"})
_READ_SIZE = 64 * 1024
# Base64 is encoded in slices of a multiple of 3 bytes, so the slices' encodings join.
_ENCODE_SLICE = 3 * 64 * 1024
# An HTML checkbox without a `value` sends "on" when it is ticked.
_TRUE_WORDS = frozenset({"on"})


@dataclass(frozen=True)
class FormLimits:
    """How much of a form is read, and where file parts go past `spool_bytes`."""

    max_parts: int
    max_field_bytes: int
    spool_bytes: int
    spool_dir: Path | None = None


def boundary_of(request: Request) -> bytes:
    """The multipart boundary of `request`'s Content-Type; `MalformedForm` when missing or invalid."""
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        raise MalformedForm(
            "Malformed multipart/form-data body: Content-Type has no boundary parameter", path="Content-Type"
        )
    if not _BOUNDARY.match(boundary):
        raise MalformedForm(
            "Malformed multipart/form-data body: the boundary must be 1 to 70 letters, digits or '()+_,-./:=? "
            "and not end with a space (RFC 2046)",
            path="Content-Type",
        )
    return boundary.encode("ascii")


class _TextPart:
    """A text part being read into memory, up to `limit` bytes."""

    def __init__(self, name: str, content_type: str | None, limit: int) -> None:
        self.name, self.limit = name, limit
        self.charset = _charset(content_type)
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(
                f"Form field {shown(self.name)} is over {self.limit} bytes (FORM_MAX_FIELD_BYTES)",
                path=json_path("$", self.name),
            )
        self.chunks.append(data)

    def text(self) -> str:
        try:
            return b"".join(self.chunks).decode(self.charset)
        except UnicodeDecodeError as exc:
            raise MalformedForm(
                f"Form field {shown(self.name)} is not valid {self.charset} (byte {exc.start})",
                path=json_path("$", self.name),
            ) from None

    def close(self) -> None:
        self.chunks.clear()


class _FilePart:
    """A file part being spooled: in memory up to `limits.spool_bytes`, then in an unnamed temporary file."""

    def __init__(self, name: str, filename: str, limit: int | None, limits: FormLimits) -> None:
        self.name, self.filename, self.limit = name, filename, limit
        self.size = 0
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close(), always
            max_size=limits.spool_bytes, mode="w+b", dir=None if limits.spool_dir is None else str(limits.spool_dir)
        )

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise PayloadTooLarge(
                f"File {shown(self.name)} is over the {self.limit} bytes this model accepts",
                path=json_path("$", self.name),
            )
        self.file.write(data)

    def base64(self) -> str:
        """The file's bytes as standard base64 (no line breaks), read back in slices."""
        self.file.seek(0)
        pieces = []
        while piece := self.file.read(_ENCODE_SLICE):
            pieces.append(binascii.b2a_base64(piece, newline=False).decode("ascii"))
        return "".join(pieces)

    def close(self) -> None:
        self.file.close()


_Part = _TextPart | _FilePart


def _charset(content_type: str | None) -> str:
    if not content_type:
        return "utf-8"
    charset = parse_options_header(content_type)[1].get("charset", "").lower()
    return charset if charset in _CHARSETS else "utf-8"


def _chunks(stream: IO[bytes], size: int) -> Iterator[bytes | None]:
    """The body in chunks of at most `size` bytes, then None (the decoder's end-of-body)."""
    while True:
        try:
            data = stream.read(size)
        except RequestEntityTooLarge:
            raise PayloadTooLarge("Request body too large") from None
        except ClientDisconnected:
            raise MalformedForm(
                "Malformed multipart/form-data body: it ended before its Content-Length (truncated?)"
            ) from None
        if not data:
            break
        yield data
    yield None


def _not_textual(schema: Any) -> bool:
    """True for a property whose declared types do not include `string`."""
    types = schema_types(schema) if isinstance(schema, dict) else frozenset()
    return bool(types) and "string" not in types


def convert_text(name: str, text: str, schema: Any) -> Any:
    """A text part's value as JSON would carry it, by the JSON type(s) property `name` allows.

    A text that does not parse as the type is kept as a string, so the schema's own
    validation reports it (`'abc' is not of type 'integer'`) as it would for JSON.
    """
    types = schema_types(schema) if isinstance(schema, dict) else frozenset()
    if not types or "string" in types:
        return text
    stripped = text.strip()
    if "boolean" in types and stripped.lower() in _TRUE_WORDS:
        return True
    try:
        value = parse_json_bytes(stripped.encode("utf-8"))
    except MalformedJson as exc:
        if types & {"object", "array"}:
            detail = exc.message.removeprefix("Malformed JSON: ")
            raise MalformedJson(
                f"Form field {shown(name)} is not valid JSON: {detail}", path=json_path("$", name)
            ) from None
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    return value


class _FormReader:
    """One form being read: the parts seen so far and the payload they make."""

    def __init__(self, form: FormSchema, limits: FormLimits) -> None:
        self.form, self.limits = form, limits
        self.payload: dict[str, Any] = {}
        # Text parts by name, in order: several parts of one name are an array's items.
        self.texts: dict[str, list[str]] = {}
        self.seen: set[str] = set()
        self.part: _Part | None = None

    def open_part(self, event: Field | File) -> None:
        """Start a part, refusing it from its headers alone when it cannot be used."""
        name: str | None = event.name
        if name is None:
            raise MalformedForm("Malformed multipart/form-data body: a part's Content-Disposition has no name")
        path = json_path("$", name)
        if name in self.seen and not self.repeatable(name):
            raise DuplicateField(f"Form field {shown(name)} was sent more than once", path=path)
        self.seen.add(name)
        form = self.form
        if name not in form.properties and not form.open:
            known = ", ".join(sorted(form.properties)) or "none"
            raise UnknownField(
                f"Form field {shown(name)} is not an input of this model (its fields: {known})", path=path
            )
        if isinstance(event, Field):
            self.part = _TextPart(name, event.headers.get("content-type"), self.limits.max_field_bytes)
            return
        if name not in form.binary:
            raise UnexpectedFile(
                f"Form field {shown(name)} was sent as a file, but it is not binary: send it as a text field",
                path=path,
            )
        media_type = event.headers.get("content-type")
        if not form.accepts_file_type(name, media_type):
            raise UnsupportedMediaType(
                f"File {shown(name)} is {media_type}, but this model takes {form.binary[name]}", path=path
            )
        self.part = _FilePart(name, event.filename, form.max_file_bytes(name), self.limits)

    def finish_part(self) -> None:
        """Put the finished part's value into the payload."""
        part, self.part = self.part, None
        if part is None:
            return
        try:
            if isinstance(part, _FilePart):
                # A browser's file input with no file chosen sends an empty part with no file name.
                if part.size or part.filename:
                    self.payload[part.name] = part.base64()
            else:
                self.texts.setdefault(part.name, []).append(part.text())
        finally:
            part.close()

    def repeatable(self, name: str) -> bool:
        """Whether `name` may come in several parts: an array property, or a field the schema leaves open.

        That is how OpenAPI tools (and `curl -F tags=a -F tags=b`) send an array in a form.
        """
        schema = self.form.properties.get(name)
        return schema is None or "array" in schema_types(schema)

    def result(self) -> dict[str, Any]:
        """The payload: files as base64, each text field converted by its property's type."""
        payload = dict(self.payload)
        for name, texts in self.texts.items():
            schema = self.form.properties.get(name)
            if len(texts) == 1 and not texts[0].strip() and _not_textual(schema):
                continue  # an HTML form's number or checkbox-less field left blank: not sent
            if len(texts) == 1:
                payload[name] = convert_text(name, texts[0], schema)
            else:
                items = schema.get("items") if schema is not None else None
                payload[name] = [convert_text(name, text, items) for text in texts]
        return payload

    def close(self) -> None:
        """Release an unfinished part (and its temporary file)."""
        if self.part is not None:
            self.part.close()
            self.part = None


def read_form(request: Request, form: FormSchema, limits: FormLimits) -> dict[str, Any]:
    """The payload a `multipart/form-data` request's parts make; 4xx naming the field when unusable."""
    boundary = boundary_of(request)
    decoder = MultipartDecoder(boundary, max_form_memory_size=limits.max_field_bytes, max_parts=limits.max_parts)
    reader = _FormReader(form, limits)
    # The decoder refuses to buffer more than max_field_bytes, so feed it less at a time.
    read_size = min(_READ_SIZE, limits.max_field_bytes // 4)
    try:
        for chunk in _chunks(request.stream, read_size):
            try:
                decoder.receive_data(chunk)
            except RequestEntityTooLarge:
                raise PayloadTooLarge(
                    f"A part's headers (or the text before the first boundary) are over "
                    f"{limits.max_field_bytes} bytes (FORM_MAX_FIELD_BYTES)"
                ) from None
            event = _next_event(decoder, limits)
            while not isinstance(event, Epilogue | NeedData):
                if isinstance(event, Field | File):
                    reader.open_part(event)
                elif isinstance(event, Data):
                    if reader.part is not None:
                        reader.part.write(event.data)
                    if not event.more_data:
                        reader.finish_part()
                event = _next_event(decoder, limits)
    except ValueError as exc:
        raise _malformed(exc, reader.part) from None
    finally:
        reader.close()
    return reader.result()


def _next_event(decoder: MultipartDecoder, limits: FormLimits) -> Any:
    try:
        return decoder.next_event()
    except RequestEntityTooLarge:
        raise TooManyParts(
            f"More than {limits.max_parts} parts in the multipart/form-data body (FORM_MAX_PARTS)"
        ) from None


def _malformed(exc: ValueError, part: _Part | None) -> MalformedForm:
    """What a decoder `ValueError` means, in the client's terms."""
    if isinstance(exc, UnicodeDecodeError):
        return MalformedForm("Malformed multipart/form-data body: a part's headers are not UTF-8")
    if "cannot parse beyond" not in str(exc):
        return MalformedForm(f"Malformed multipart/form-data body: {exc}")
    if part is not None:
        return MalformedForm(
            f"Malformed multipart/form-data body: it ends inside field {shown(part.name)}, "
            "before the closing boundary (truncated?)",
            path=json_path("$", part.name),
        )
    return MalformedForm(
        "Malformed multipart/form-data body: no closing boundary (truncated, or not delimited "
        "by the boundary its Content-Type declares)"
    )
