"""What a model's input schema says about form fields and raw bodies.

A property is *binary* when it is a string with `contentEncoding: base64` (JSON Schema
draft 2020-12's way of saying "bytes, carried as base64 in JSON"); its `contentMediaType`,
when present, says which media types the bytes may be. A multipart file part fills a
binary property, a text part any other; a raw body (`Content-Type: image/png`, say) is
accepted only for a model whose one required property is binary.

No Flask here: the OpenAPI document reads the same facts to describe the forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A body of these types is the bytes of a file of unknown type: always accepted for a
# binary property, whatever its contentMediaType says.
OCTET_STREAM = "application/octet-stream"


def schema_types(schema: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types `schema` allows by its `type` keyword; empty when it does not say."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(item for item in declared if isinstance(item, str))
    return frozenset()


def is_binary(schema: object) -> bool:
    """True for a string property carried as base64 (`contentEncoding: base64`)."""
    if not isinstance(schema, Mapping):
        return False
    encoding = schema.get("contentEncoding")
    types = schema_types(schema)
    return isinstance(encoding, str) and encoding.lower() == "base64" and (not types or "string" in types)


def media_type_matches(accepted: str, sent: str) -> bool:
    """True when media type `sent` is `accepted` (which may be a range such as `image/*`)."""
    want = accepted.split(";", 1)[0].strip().lower()
    got = sent.split(";", 1)[0].strip().lower()
    if want in ("*/*", got):
        return True
    return want.endswith("/*") and got.startswith(want[:-1])


def shown(name: str, limit: int = 80) -> str:
    """`name` quoted for an error message, cut short when a client sent something huge."""
    return repr(name if len(name) <= limit else name[: limit - 3] + "...")


@dataclass(frozen=True)
class FormSchema:
    """The form view of an object input schema: its fields, which are binary, what a raw body fills."""

    properties: Mapping[str, Mapping[str, Any]]
    # Binary property -> its declared contentMediaType (None: any type of file).
    binary: Mapping[str, str | None]
    # Whether fields the schema does not name are allowed (`additionalProperties` is not false).
    open: bool
    # The property a raw (non-JSON) body fills, or None when the model takes no raw body.
    raw_property: str | None

    @classmethod
    def of(cls, schema: object) -> FormSchema | None:
        """The form view of `schema`, or None when it is not an object schema (no form fits it)."""
        if not isinstance(schema, Mapping):
            return None
        raw_properties = schema.get("properties", {})
        if schema.get("type") != "object" or not isinstance(raw_properties, Mapping):
            return None
        properties = {name: value for name, value in raw_properties.items() if isinstance(value, Mapping)}
        binary: dict[str, str | None] = {}
        for name, value in properties.items():
            if is_binary(value):
                media = value.get("contentMediaType")
                binary[name] = media if isinstance(media, str) and media.strip() else None
        required = schema.get("required", [])
        required_names = [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
        raw_property = required_names[0] if len(required_names) == 1 and required_names[0] in binary else None
        return cls(
            properties=properties,
            binary=binary,
            open=schema.get("additionalProperties", True) is not False,
            raw_property=raw_property,
        )

    def accepts_file_type(self, name: str, media_type: str | None) -> bool:
        """Whether a file of `media_type` may fill binary property `name`."""
        declared = self.binary.get(name)
        if declared is None or not media_type:
            return True
        return media_type_matches(OCTET_STREAM, media_type) or media_type_matches(declared, media_type)

    def raw_media_types(self) -> list[str]:
        """The media types of a raw body this model takes (empty when it takes none)."""
        if self.raw_property is None:
            return []
        declared = self.binary[self.raw_property]
        return [declared or "image/*", OCTET_STREAM]

    def max_file_bytes(self, name: str) -> int | None:
        """The most bytes binary property `name` may hold, from its `maxLength` in base64 characters."""
        max_length = self.properties[name].get("maxLength")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 0:
            return None
        # n bytes take 4 * ceil(n / 3) characters of base64.
        return (max_length // 4) * 3
