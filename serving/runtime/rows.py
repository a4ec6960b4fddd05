"""Running many payloads of one model through its batched path, for the protocol routes.

`POST /v1/embeddings` (one text per row) and the Open Inference Protocol's `infer` (one
tensor row per payload) both hand a model a list of payloads and fail as a whole when one
row fails, as the batch route does.
"""

from __future__ import annotations

from typing import Any

from serving.errors import ApiError
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelRuntime
from serving.runtime.request_scope import check


class RowFailed(Exception):
    """Row `index` (counted from 0 over the whole request) failed with `error`."""

    def __init__(self, index: int, error: ApiError) -> None:
        super().__init__(f"row {index}: {error.message}")
        self.index = index
        self.error = error


def predict_rows(inference: Inference, runtime: ModelRuntime, payloads: list[Any]) -> list[Any]:
    """Every payload's result in order, in chunks of the handler's `max_batch_size`.

    Each chunk is one `predict_many` (one `predict_batch` call when the handler has one).
    Raises `RowFailed` for the first failing row; later chunks are not run.
    """
    size = runtime.spec.batch.max_batch_size
    results: list[Any] = []
    for start in range(0, len(payloads), size):
        check(ask_client=True)  # no next chunk once the budget is spent or the client has gone
        outcomes = inference.predict_many(runtime, payloads[start : start + size])
        for offset, outcome in enumerate(outcomes):
            if isinstance(outcome, ApiError):
                raise RowFailed(start + offset, outcome)
        results.extend(outcomes)
    return results
