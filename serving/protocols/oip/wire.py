"""The bytes of an Open Inference Protocol `infer` request and response, JSON and binary.

A request is a JSON document, optionally followed by the binary tensor data extension's
raw tensors: the `Inference-Header-Content-Length` header gives the JSON part's length,
and each input whose `parameters.binary_data_size` is set takes that many bytes of what
follows, in order. tritonclient sends every tensor this way by default and asks for
binary outputs too (`binary_data_output`), so both directions are implemented.

Binary layouts: numbers little-endian (INT64 `<i8`, INT32 `<i4`, FP64 `<f8`, FP32 `<f4`),
BOOL one byte each, BYTES each element as a 4-byte little-endian length and its bytes.
Hand-written because the only library that knows the layout is tritonclient itself, a
client with gevent in tow that a server should not need; numpy does the numeric part.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import ValidationFailed
from serving.http.body import parse_json_bytes

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMERIC = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4", "BOOL": "|b1"}
DATATYPES = (*NUMERIC, "BYTES")
# Nested `data` arrays are flattened with an explicit stack; deeper than this is refused.
MAX_DATA_DEPTH = 32


@dataclass
class InputTensor:
    name: str
    datatype: str
    shape: list[int]
    values: list[Any]


@dataclass
class InferRequest:
    inputs: list[InputTensor]
    request_id: str | None = None
    # Requested outputs by name -> binary or not; None: all outputs.
    outputs: dict[str, bool] | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def _fail(message: str, path: str) -> ValidationFailed:
    return ValidationFailed(message, path=path)


def _flatten(data: Any, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise _fail("'data' must be an array (nested arrays are read row-major)", path)
    flat: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list):
            if depth > MAX_DATA_DEPTH:
                raise _fail(f"'data' is nested deeper than {MAX_DATA_DEPTH}", path)
            stack.extend((child, depth + 1) for child in reversed(item))
        else:
            flat.append(item)
    return flat


def _json_values(datatype: str, values: list[Any], path: str) -> list[Any]:
    for value in values:
        if datatype == "BYTES":
            ok = isinstance(value, str)
        elif datatype == "BOOL":
            ok = isinstance(value, bool)
        elif datatype.startswith("INT"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise _fail(f"{datatype} data holds {json.dumps(value)[:40]}, which is not {datatype} data", path)
    return values


def _binary_values(datatype: str, raw: bytes, path: str) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise _fail("BYTES binary data ends inside an element's 4-byte length", path)
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise _fail("BYTES binary data ends inside an element", path)
            values.append(raw[offset : offset + length])
            offset += length
        return values
    dtype = np.dtype(NUMERIC[datatype])
    if len(raw) % dtype.itemsize:
        raise _fail(f"{len(raw)} bytes is not a whole number of {datatype} elements", path)
    array = np.frombuffer(raw, dtype=np.uint8).astype(bool) if datatype == "BOOL" else np.frombuffer(raw, dtype)
    return list(array.tolist())


def _shape(value: Any, path: str) -> list[int]:
    valid = isinstance(value, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    if not valid or not value or any(d < 0 for d in value):
        raise _fail("'shape' must be a non-empty array of integers >= 0", path)
    return list(value)


def _parameters(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail("'parameters' must be an object", path)
    return value


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The request's tensors with their values decoded; `ValidationFailed` (400) naming what is wrong."""
    if header_length is None:
        split = len(body)
    elif header_length.isdigit() and int(header_length) <= len(body):
        split = int(header_length)
    else:
        raise _fail(f"{HEADER_LENGTH} must be the length of the JSON part, at most {len(body)}", "$")
    document = parse_json_bytes(body[:split])
    binary = memoryview(body)[split:]
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise _fail('An infer request is a JSON object with "inputs": a non-empty array of tensors', "$")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _fail("'id' must be a string", "$.id")
    parameters = _parameters(document.get("parameters"), "$.parameters")
    offset = 0
    inputs: list[InputTensor] = []
    for index, tensor in enumerate(document["inputs"]):
        path = f"$.inputs[{index}]"
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise _fail("each input is an object with a 'name', 'shape', 'datatype' and 'data'", path)
        name, datatype = tensor["name"], tensor.get("datatype")
        if datatype not in DATATYPES:
            raise _fail(f"input {name[:64]!r}: 'datatype' must be one of {', '.join(DATATYPES)}", f"{path}.datatype")
        shape = _shape(tensor.get("shape"), f"{path}.shape")
        size = _parameters(tensor.get("parameters"), f"{path}.parameters").get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise _fail(f"input {name[:64]!r}: binary_data_size {size!r} runs past the body's binary part", path)
            values = _binary_values(datatype, bytes(binary[offset : offset + size]), path)
            offset += size
        elif "data" in tensor:
            values = _json_values(datatype, _flatten(tensor["data"], f"{path}.data"), f"{path}.data")
        else:
            raise _fail(f"input {name[:64]!r} has no 'data' (nor binary_data_size)", path)
        count = 1
        for dimension in shape:
            count *= dimension
        if count != len(values):
            raise _fail(f"input {name[:64]!r}: shape {shape} holds {count} elements, the data {len(values)}", path)
        inputs.append(InputTensor(name, datatype, shape, values))
    if offset != len(binary):
        raise _fail(f"{len(binary) - offset} bytes after the JSON part belong to no input", "$")
    return InferRequest(
        inputs=inputs,
        request_id=request_id,
        outputs=_requested_outputs(document.get("outputs")),
        binary_output=parameters.get("binary_data_output") is True,
        parameters=parameters,
    )


def _requested_outputs(value: Any) -> dict[str, bool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _fail("'outputs' must be an array of {\"name\": ...}", "$.outputs")
    requested: dict[str, bool] = {}
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _fail("each requested output is an object with a 'name'", f"$.outputs[{index}]")
        binary = _parameters(entry.get("parameters"), f"$.outputs[{index}].parameters").get("binary_data")
        requested[entry["name"]] = binary is True
    return requested


@dataclass
class OutputTensor:
    name: str
    datatype: str
    shape: list[int]
    values: list[Any]  # str for text BYTES, bytes for binary BYTES, numbers, bools
    binary: bool


def _raw(tensor: OutputTensor) -> bytes:
    if tensor.datatype == "BYTES":
        parts = []
        for value in tensor.values:
            data = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.asarray(tensor.values, dtype=NUMERIC[tensor.datatype]).tobytes()


def _json_data(tensor: OutputTensor) -> list[Any]:
    if tensor.datatype != "BYTES":
        return tensor.values
    # Raw bytes cannot be a JSON string: binary outputs go as base64 text in JSON.
    return [base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for v in tensor.values]


def encode_infer_response(header: Mapping[str, Any], outputs: list[OutputTensor]) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary tensors follow it."""
    entries = []
    blobs = []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.binary:
            blob = _raw(tensor)
            blobs.append(blob)
            entry["parameters"] = {"binary_data_size": len(blob)}
        else:
            entry["data"] = _json_data(tensor)
        entries.append(entry)
    document = json.dumps({**header, "outputs": entries}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if not blobs:
        return document, None
    return document + b"".join(blobs), len(document)
