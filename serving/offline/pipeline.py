"""The scoring pipeline: JSON Lines in, results and a dead-letter output out, on any Beam runner.

`add_scoring(pipeline, handler, job)` reads every file matching `job.input` (local or
`gs://` globs; one JSON payload per line, blank lines skipped), scores each payload with
`RunInference(handler).with_exception_handling()` and writes

- `job.output` + `-SSSSS-of-NNNNN.jsonl`: one `{"key"?, "result", "model_version"}` per
  scored row (`key` when `job.key` names a field of the input, which is then taken out of
  the payload before validation);
- `job.dead_letter` + `-SSSSS-of-NNNNN.jsonl`: one `{"line", "error"}` per row that could
  not be scored: not JSON, no key, invalid input, or the model failed on it.

Rows are read as bytes and decoded here, so a line that is not UTF-8 is a dead letter and
not a crashed pipeline. `score(...)` runs it and returns the counts from Beam's metrics.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import apache_beam as beam
import orjson
from apache_beam.coders.coders import BytesCoder
from apache_beam.io.textio import ReadFromText, WriteToText
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from serving.offline.model_handler import HandlerModelHandler, Row

SHARD_SUFFIX = ".jsonl"
_PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class ScoreJob:
    """What to score and where to write it."""

    input: str
    output: str
    dead_letter: str
    key: str | None = None


@dataclass(frozen=True)
class ScoreSummary:
    """The counts of one finished run (from Beam's metrics) and how long it took."""

    scored: int
    dead_letters: int
    seconds: float
    state: str


def add_scoring(pipeline: beam.Pipeline, handler: HandlerModelHandler, job: ScoreJob, progress: bool = False) -> None:
    """Add reading, scoring and both outputs of `job` to `pipeline`."""
    namespace = handler.get_metrics_namespace()
    parsed = (
        pipeline
        | "Read" >> ReadFromText(job.input, coder=BytesCoder())
        | "Parse" >> beam.ParDo(_ParseLine(job.key, namespace)).with_outputs(_UNPARSABLE, main="rows")
    )
    results, errors = parsed.rows | "Score" >> RunInference(handler).with_exception_handling()
    lines = results | "Format" >> beam.Map(_result_line, with_key=job.key is not None)
    if progress:
        lines = lines | "Progress" >> beam.ParDo(_Progress(handler.name, sys.stderr))
    lines | "Write" >> WriteToText(job.output, file_name_suffix=SHARD_SUFFIX)

    dead: list[Any] = [parsed[_UNPARSABLE]]
    for index, failed in enumerate([*errors.failed_preprocessing, *errors.failed_postprocessing]):
        dead.append(failed | f"DeadRow{index}" >> beam.Map(_dead_row))
    dead.append(errors.failed_inferences | "DeadBatch" >> beam.FlatMap(_dead_batch, namespace))
    (
        dead
        | "DeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteToText(job.dead_letter, file_name_suffix=SHARD_SUFFIX)
    )


def score(
    handler: HandlerModelHandler, job: ScoreJob, options: PipelineOptions, *, progress: bool = False
) -> ScoreSummary:
    """Run `job` with `options` until it finishes; the counts of scored rows and dead letters."""
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    add_scoring(pipeline, handler, job, progress)
    result = pipeline.run()
    state = result.wait_until_finish()
    counters = {
        counter.key.metric.name: counter.committed or counter.attempted or 0
        for counter in result.metrics().query(MetricsFilter().with_namespace(handler.get_metrics_namespace()))[
            "counters"
        ]
    }
    dead = sum(counters.get(name, 0) for name in ("unparsable", "invalid", "failed", "failed_batches"))
    return ScoreSummary(counters.get("scored", 0), dead, time.perf_counter() - started, str(state))


_UNPARSABLE = "unparsable"


class _ParseLine(beam.DoFn):
    """One input line as a `Row`, or a dead letter saying why it is not a payload."""

    def __init__(self, key: str | None, namespace: str) -> None:
        self._key = key
        self._unparsable = Metrics.counter(namespace, "unparsable")

    def process(self, raw: bytes) -> Iterator[Any]:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield self._reject(
                raw.decode("utf-8", errors="replace"), f"not UTF-8 text: {exc.reason} at byte {exc.start}"
            )
            return
        if not line.strip():
            return
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield self._reject(line, f"not JSON: {exc}")
            return
        if self._key is None:
            yield Row(payload, None, line)
            return
        if not isinstance(payload, dict) or self._key not in payload:
            yield self._reject(line, f"no {self._key!r} field (the --key) in this line")
            return
        key = payload.pop(self._key)
        yield Row(payload, key, line)

    def _reject(self, line: str, error: str) -> Any:
        self._unparsable.inc()
        return beam.pvalue.TaggedOutput(_UNPARSABLE, _json({"line": line, "error": error}))


class _Progress(beam.DoFn):
    """Passes lines through, and says on `stream` how many this worker has written, every few seconds."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self._name = name
        self._stream = stream

    def setup(self) -> None:
        self._count = 0
        self._started = self._last = time.monotonic()

    def process(self, line: str) -> Iterator[str]:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= _PROGRESS_EVERY_S:
            self._last = now
            rate = self._count / (now - self._started)
            print(f"{self._name}: {self._count:,} rows scored ({rate:,.0f} rows/s)", file=self._stream, flush=True)
        yield line

    def __getstate__(self) -> dict[str, Any]:
        # sys.stderr is not picklable; the worker (a local process) writes to its own.
        return {"_name": self._name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stream = sys.stderr


def _result_line(result: PredictionResult, with_key: bool) -> str:
    record: dict[str, Any] = {}
    element = result.example
    if with_key and isinstance(element, Row):
        record["key"] = element.key
    record["result"] = result.inference
    record["model_version"] = (result.model_id or "").partition("/")[2]
    return _json(record)


def _dead_row(failure: tuple[Any, tuple[type, str, Sequence[str]]]) -> str:
    element, (_, reason, _) = failure
    if isinstance(element, PredictionResult):
        element = element.example
    return _json({"line": _line_of(element), "error": reason})


def _dead_batch(failure: tuple[Sequence[Any], tuple[type, str, Sequence[str]]], namespace: str) -> Iterable[str]:
    batch, (_, reason, _) = failure
    Metrics.counter(namespace, "failed_batches").inc(len(batch))
    for element in batch:
        yield _json({"line": _line_of(element), "error": f"the batch failed: {reason}"})


def _line_of(element: Any) -> str:
    if isinstance(element, Row) and element.line is not None:
        return element.line
    return json.dumps(element.payload if isinstance(element, Row) else element)


def _json(record: dict[str, Any]) -> str:
    return orjson.dumps(record).decode()
