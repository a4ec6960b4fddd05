"""OpenAI's `Model` object for a served model, so `client.models.list()` works on the native listing.

`GET /v1/models` answers OpenAI's `{"object": "list", "data": [...]}` beside its own
`models` list, and `GET /v1/models/<Name>` carries the same four keys beside its own.
"""

from __future__ import annotations

from typing import Any

from serving.runtime.registry import ModelRuntime

OWNED_BY = "model-serving"


def openai_model(runtime: ModelRuntime) -> dict[str, Any]:
    """`{"id", "object": "model", "created", "owned_by"}` for one model.

    `created` is the handler file's modification time (Unix seconds): the same in every
    worker and instance of one deployment, which a process start time would not be.
    """
    try:
        created = int(runtime.spec.path.stat().st_mtime)
    except OSError:
        created = 0
    return {"id": runtime.spec.name, "object": "model", "created": created, "owned_by": OWNED_BY}
