"""Running many payloads of one model through its batched path, for the protocol routes.

`POST /v1/embeddings` (one text per row) and the Open Inference Protocol's `infer` (one
tensor row per payload) both hand a model a list of payloads and fail as a whole when one
row fails, as the batch route does.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    results: list[Any] = []
    for index, outcome in row_outcomes(inference, runtime, payloads):
        if isinstance(outcome, ApiError):
            raise RowFailed(index, outcome)
        results.append(outcome)
    return results


def row_outcomes(inference: Inference, runtime: ModelRuntime, payloads: list[Any]) -> Iterator[tuple[int, Any]]:
    """`(index, result or ApiError)` for every payload, in order, run in chunks of `max_batch_size`.

    A chunk runs when the caller asks for its first row, so a caller that stops at a
    failure runs no later chunk.
    """
    size = runtime.spec.batch.max_batch_size
    for start in range(0, len(payloads), size):
        check(ask_client=True)  # no next chunk once the budget is spent or the client has gone
        outcomes = inference.predict_many(runtime, payloads[start : start + size])
        for offset, outcome in enumerate(outcomes):
            yield start + offset, outcome
