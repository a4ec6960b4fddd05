"""The OpenAPI schemas of the `instances` / `predictions` format (instances.py), per model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from serving.protocols.instances import DEFAULT_SIGNATURE
from serving.runtime.registry import ModelRuntime

if TYPE_CHECKING:
    from serving.openapi.builder import OpenApiDocument


def _instances_request_schema(input_ref: Mapping[str, Any], max_instances: int) -> dict[str, Any]:
    return {
        "type": "object",
        "description": 'TF Serving / KServe v1 / Vertex AI row format. A `{"b64": "..."}` object stands for '
        "its base64 string wherever it appears in an instance.",
        "properties": {
            # No maxItems: more than the limit is a 413, which a schema cannot say.
            "instances": {
                "type": "array",
                "items": dict(input_ref),
                "description": f"One input per prediction; at most {max_instances} (PREDICT_MAX_INSTANCES), else 413.",
            },
            "parameters": {
                "type": ["object", "null"],
                "maxProperties": 0,
                "description": "Accepted for compatibility; models take no parameters, so it must be empty.",
            },
            "signature_name": {"enum": [DEFAULT_SIGNATURE, None]},
        },
        "required": ["instances"],
        "additionalProperties": False,
    }


def instances_schemas(doc: OpenApiDocument, runtime: ModelRuntime, max_instances: int) -> tuple[Any, Any]:
    """`<Model>.BatchRequest` and `<Model>.Predictions` (added once): refs to the request and the answer.

    They refer to `<Model>.Input` and `<Model>.Output`, which the native protocol's group adds.
    """
    name = runtime.spec.name
    request_ref = doc.add_schema(
        f"{name}.BatchRequest", _instances_request_schema(doc.ref(f"{name}.Input"), max_instances)
    )
    predictions_ref = doc.add_schema(
        f"{name}.Predictions",
        {
            "type": "object",
            "properties": {"predictions": {"type": "array", "items": doc.ref(f"{name}.Output")}},
            "required": ["predictions"],
            "additionalProperties": False,
        },
    )
    return request_ref, predictions_ref
