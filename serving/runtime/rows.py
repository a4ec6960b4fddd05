"""Running many payloads of one model through its batched path, for the protocol routes.

`POST /v1/embeddings` (one text per row), the Open Inference Protocol's `infer` (one
tensor row per payload), BigQuery's remote-function calls and the instances of
`:predict` hand a model a list of payloads in chunks of its `max_batch_size`.

A request of more rows than one chunk is *bulk* work: CPU-bound rows under the worker's
one interpreter lock. At most `BULK_MAX_IN_FLIGHT` of them run at once in a worker
(`bulk_slot`); the others wait their turn, within their time budget. Measured on a
500-row Digits table (bench/NOTES.md): with eight such requests at once in a worker each
row cost 15-25% more CPU than with two (the threads hand the lock to each other at every
release by a decoder or the model), and fewer rows a second were answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Any

from serving.errors import ApiError
from serving.runtime.inference import Inference
from serving.runtime.registry import ModelRuntime
from serving.runtime.request_scope import check, current_scope

# How often a request waiting for a bulk slot looks whether its budget is spent or its client gone.
_SLOT_CHECK_S = 0.05


class RowFailed(Exception):
    """Row `index` (counted from 0 over the whole request) failed with `error`."""

    def __init__(self, index: int, error: ApiError) -> None:
        super().__init__(f"row {index}: {error.message}")
        self.index = index
        self.error = error


@contextlib.contextmanager
def bulk_slot(inference: Inference, runtime: ModelRuntime, rows: int) -> Iterator[None]:
    """Hold one of the worker's bulk slots while a request of `rows` rows runs them, if they are bulk.

    Rows that fit in one chunk of `max_batch_size` take no slot. A request waiting for
    one has its time budget running (504 once it is spent) and stops waiting when its
    client has gone (`ClientGone`).
    """
    slots = inference.bulk_slots
    if slots is None or rows <= runtime.spec.batch.max_batch_size:
        yield
        return
    if not slots.acquire(blocking=False):
        scope = current_scope()
        if scope is not None:  # the budget runs while it waits, as in a batcher's queue
            scope.start_deadline(inference.budget.timeout_for(runtime.spec.timeout_s))
        while not slots.acquire(timeout=_SLOT_CHECK_S):
            check(ask_client=True)
    try:
        yield
    finally:
        slots.release()


def predict_rows(inference: Inference, runtime: ModelRuntime, payloads: list[Any]) -> list[Any]:
    """Every payload's result in order, in chunks of the handler's `max_batch_size`.

    Each chunk is one `predict_many` (one `predict_batch` call when the handler has one).
    Raises `RowFailed` for the first failing row; later chunks are not run.
    """
    results: list[Any] = []
    with contextlib.closing(row_outcomes(inference, runtime, payloads)) as outcomes:
        for index, outcome in outcomes:
            if isinstance(outcome, ApiError):
                raise RowFailed(index, outcome)
            results.append(outcome)
    return results


def row_outcomes(
    inference: Inference, runtime: ModelRuntime, payloads: list[Any]
) -> Generator[tuple[int, Any], None, None]:
    """`(index, result or ApiError)` for every payload, in order, run in chunks of `max_batch_size`.

    A chunk runs when the caller asks for its first row, so a caller that stops at a
    failure runs no later chunk. Bulk work holds a `bulk_slot` from the first row to the
    last: a caller that may stop early closes the iterator (`contextlib.closing`), which
    gives the slot back at once.
    """
    size = runtime.spec.batch.max_batch_size
    with bulk_slot(inference, runtime, len(payloads)):
        for start in range(0, len(payloads), size):
            check(ask_client=True)  # no next chunk once the budget is spent or the client has gone
            outcomes = inference.predict_many(runtime, payloads[start : start + size])
            for offset, outcome in enumerate(outcomes):
                yield start + offset, outcome
