"""Shared pieces of the offline-scoring tests: a pipeline run whose outputs the test reads back.

apache-beam lives in .venv-beam (requirements-beam.txt: its pillow pin clashes with
requirements.txt's), so in the main environment these tests skip, saying where they run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BEAM_MISSING = "apache-beam is not installed here: the offline tests run in .venv-beam (make test-beam)"


@dataclass
class Outcome:
    """What one RunInference run produced, read back from the files it wrote."""

    results: list[dict[str, Any]]
    invalid: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    counters: dict[str, int]


def read_shards(prefix: Path) -> list[dict[str, Any]]:
    """Every JSON line of the shards `prefix-*` (in shard order)."""
    return [
        json.loads(line)
        for path in sorted(prefix.parent.glob(prefix.name + "-*"))
        for line in path.read_text().splitlines()
    ]


@pytest.fixture
def run_inference(tmp_path: Path) -> Any:
    """Run `RunInference(handler).with_exception_handling()` on `elements` with the DirectRunner."""
    beam = pytest.importorskip("apache_beam", reason=BEAM_MISSING)
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    def run(handler: Any, elements: Iterable[Any], flags: list[str] | None = None) -> Outcome:
        out = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
        out.mkdir()
        pipeline = beam.Pipeline(options=PipelineOptions(flags or []))
        results, errors = pipeline | beam.Create(list(elements)) | RunInference(handler).with_exception_handling()
        _ = (
            results
            | "Results"
            >> beam.Map(lambda r: json.dumps({"example": r.example, "inference": r.inference, "model_id": r.model_id}))
            | "WriteResults" >> beam.io.WriteToText(str(out / "results"))
        )
        for name, failures in (
            ("invalid", errors.failed_preprocessing[0]),
            ("failed", errors.failed_postprocessing[0]),
        ):
            _ = (
                failures
                | f"{name}Format" >> beam.Map(_failure_json)
                | f"{name}Write" >> beam.io.WriteToText(str(out / name))
            )
        result = pipeline.run()
        result.wait_until_finish()
        # Beam's own RunInference counters (num_inferences, ...) share the namespace.
        counters = {
            c.key.metric.name: c.committed
            for c in result.metrics().query(MetricsFilter().with_namespace(handler.get_metrics_namespace()))["counters"]
            if c.key.metric.name in ("scored", "invalid", "failed")
        }
        return Outcome(
            read_shards(out / "results"), read_shards(out / "invalid"), read_shards(out / "failed"), counters
        )

    return run


def _failure_json(failure: Any) -> str:
    element, (kind, reason, _) = failure
    example = getattr(element, "example", element)
    return json.dumps({"example": example, "type": kind.__name__, "reason": reason})
