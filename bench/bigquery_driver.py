"""A stand-in for BigQuery calling a remote function: for the tests and the benchmark.

`StandIn.run(calls)` plays what BigQuery does with a table: it splits the rows into
requests of `rows_per_request` with the real request shape (`requestId`, `caller`,
`sessionUser`, `userDefinedContext`, `calls`), sends `concurrency` of them at a time,
retries 408, 429, 500, 503 and 504 (and dropped connections) with exponential backoff
and jitter, at least `Retry-After`, up to 20 times, and puts every reply back in its
row's place. A request that fails otherwise, or a reply with the wrong number of rows,
raises `CallFailed`, as the query would fail.

`native_answers` asks `POST /v1/<Model>` for each row, one request per row, so a test or
the benchmark can check that every reply is the model's answer for that row. Nothing is
sent anywhere but the URL given (127.0.0.1 in the tests and the benchmark).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

RETRIED_STATUSES = frozenset({408, 429, 500, 503, 504})
MAX_RETRIES = 20


class CallFailed(Exception):
    """A request BigQuery would not retry (or gave up on); the query fails with this."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Report:
    """What one run of a table did."""

    replies: list[Any]
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    statuses: dict[int | None, int] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return len(self.replies) / self.seconds if self.seconds else 0.0


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file, one JSON object a line (blank lines skipped)."""
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def json_calls(rows: Iterable[dict[str, Any]]) -> list[list[Any]]:
    """One JSON argument per row: what `fn(TO_JSON(STRUCT(...)))` sends."""
    return [[row] for row in rows]


def positional_calls(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> list[list[Any]]:
    """The row's `columns` as scalar arguments: what `fn(col_a, col_b, ...)` sends."""
    return [[row.get(column) for column in columns] for row in rows]


class StandIn:
    """Sends a table's rows to one remote-function endpoint the way BigQuery does."""

    def __init__(
        self,
        endpoint: str,
        *,
        rows_per_request: int = 500,
        concurrency: int = 16,
        context: dict[str, str] | None = None,
        authorization: Callable[[], str] | None = None,
        timeout_s: float = 120.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 4.0,
    ) -> None:
        self.endpoint = endpoint
        self.rows_per_request = rows_per_request
        self.concurrency = concurrency
        self.context = context or {}
        self.authorization = authorization
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._local = threading.local()
        self._lock = threading.Lock()
        # Requests answered so far in the current run: lets a test act mid-table.
        self.answered = 0

    def run(self, calls: Sequence[list[Any]]) -> Report:
        """Every row's reply, in order; `CallFailed` when a request fails for good."""
        job = uuid.uuid4().hex[:12]
        self.answered = 0
        chunks = [calls[i : i + self.rows_per_request] for i in range(0, len(calls), self.rows_per_request)]
        report = Report(replies=[])
        started = time.perf_counter()
        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(lambda item: self._send(f"{job}-{item[0]}", item[1], report), enumerate(chunks)))
        report.seconds = time.perf_counter() - started
        report.replies = [reply for answer in answers for reply in answer]
        return report

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _send(self, request_id: str, calls: list[list[Any]], report: Report) -> list[Any]:
        # orjson: BigQuery's own encoding costs this machine nothing, so the stand-in's should
        # cost it as little as it can (the stdlib's encoding and parsing: 1.7 us an Iris row,
        # a quarter of the stand-in's CPU, on the cores the server is measured on).
        body = orjson.dumps(
            {
                "requestId": request_id,
                "caller": "//bigquery.googleapis.com/projects/stand-in/jobs/stand-in:US.bquxjob_stand_in",
                "sessionUser": "stand-in@example.com",
                "userDefinedContext": self.context,
                "calls": calls,
            }
        )
        for attempt in range(MAX_RETRIES + 1):
            headers = {"Content-Type": "application/json"}
            if self.authorization is not None:
                headers["Authorization"] = self.authorization()
            status: int | None
            retry_after = 0.0
            try:
                response = self._session().post(self.endpoint, data=body, headers=headers, timeout=self.timeout_s)
                status = response.status_code
            except requests.RequestException:
                # Refused, reset, timed out or a reply cut short: the connection is gone,
                # and BigQuery retries on a new one.
                self._local.session = None
                status, response = None, None
            with self._lock:
                report.requests += 1
                report.statuses[status] = report.statuses.get(status, 0) + 1
            if status == 200 and response is not None:
                replies = orjson.loads(response.content).get("replies")
                if not isinstance(replies, list) or len(replies) != len(calls):
                    raise CallFailed(200, f"{request_id}: {len(calls)} calls but replies were {str(replies)[:200]}")
                with self._lock:
                    self.answered += 1
                return replies
            if status is not None and status not in RETRIED_STATUSES:
                raise CallFailed(status, _error_message(response))
            if response is not None:
                retry_after = _seconds(response.headers.get("Retry-After"))
            if attempt == MAX_RETRIES:
                break
            with self._lock:
                report.retries += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
            time.sleep(max(delay, retry_after))
        raise CallFailed(status, f"{request_id}: still failing after {MAX_RETRIES} retries")


def _seconds(value: str | None) -> float:
    try:
        return min(float(value or 0), 30.0)
    except ValueError:
        return 0.0


def _error_message(response: requests.Response | None) -> str:
    if response is None:
        return "no response"
    try:
        return str(response.json().get("errorMessage"))
    except ValueError:
        return response.text[:200]


def native_answers(base_url: str, model: str, rows: Sequence[dict[str, Any]], concurrency: int = 8) -> list[Any]:
    """`POST /v1/<model>`'s `result` for each row, one request per row."""
    local = threading.local()

    def answer(row: dict[str, Any]) -> Any:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.post(f"{base_url}/v1/{model}", json=row, timeout=60)
        response.raise_for_status()
        return response.json()["result"]

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(answer, rows))


def same_answer(got: Any, expected: Any, *, tolerance: float = 1e-5) -> bool:
    """True when two JSON answers are equal, floats within `tolerance` (relative or absolute).

    A model run on a batch of rows (float32 matrix products) may differ from the same
    model run on one row in the last digit; that is the same answer.
    """
    if isinstance(got, float) or isinstance(expected, float):
        if isinstance(got, bool) or isinstance(expected, bool):
            return got is expected
        if not isinstance(got, (int, float)) or not isinstance(expected, (int, float)):
            return False
        return abs(got - expected) <= tolerance * max(1.0, abs(expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same_answer(got[k], expected[k], tolerance=tolerance) for k in got)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(
            same_answer(a, b, tolerance=tolerance) for a, b in zip(got, expected, strict=True)
        )
    return bool(got == expected)


def mismatches(replies: Sequence[Any], expected: Sequence[Any]) -> list[int]:
    """Indices of the rows whose reply is not the expected answer (every row, when the counts differ)."""
    if len(replies) != len(expected):
        return list(range(max(len(replies), len(expected))))
    return [i for i, (got, want) in enumerate(zip(replies, expected, strict=True)) if not same_answer(got, want)]
