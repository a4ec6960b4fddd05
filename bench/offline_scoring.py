"""Rows/s of offline scoring on Beam's DirectRunner against a plain loop calling `predict`.

For Iris and Digits, in one run and on the same JSON Lines file each: the score pipeline
(`serving.offline.pipeline.score`: read, parse, validate, batch, `predict_batch`, write
results and dead letters) on the DirectRunner, and the baseline a user would write
first: a Python loop that parses each line and calls the handler's `predict` on it, one
row at a time, with the model already loaded. Both include reading and parsing; the
loop writes nothing. Prints the table and writes bench/RESULTS-offline.md.

    .venv-beam/bin/python -m bench.offline_scoring [--iris 20000] [--digits 1000] [--runs 3]

The row builders are shared with tests/offline/ (varied inputs: Iris measurements drawn
across the data set's ranges, Digits drawn with a pen at varied sizes and stroke widths).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

RESULTS = PROJECT_ROOT / "bench" / "RESULTS-offline.md"
# Measured flowers span these (cm); handlers/iris.py accepts (0, 30].
_IRIS_RANGES = {
    "sepal_length": (4.3, 7.9),
    "sepal_width": (2.0, 4.4),
    "petal_length": (1.0, 6.9),
    "petal_width": (0.1, 2.5),
}


def iris_rows(count: int, seed: int = 21) -> list[dict[str, Any]]:
    """`count` Iris payloads with an `id`, measurements drawn across the data set's ranges."""
    rng = random.Random(seed)  # noqa: S311 - varied test inputs, not secrets
    return [
        {
            "id": f"iris-{index}",
            **{name: round(rng.uniform(low, high), 1) for name, (low, high) in _IRIS_RANGES.items()},
        }
        for index in range(count)
    ]


def digits_rows(count: int, seed: int = 21) -> list[dict[str, Any]]:
    """`count` Digits payloads with an `id`: each digit drawn at a varied size and stroke width."""
    from models.digits.rendering import as_base64, draw_digit

    rng = random.Random(seed)  # noqa: S311 - varied test inputs, not secrets
    rows = []
    for index in range(count):
        png = draw_digit(index % 10, size=rng.choice((24, 32, 48, 64, 96)), pen=rng.uniform(0.06, 0.14))
        rows.append({"id": f"digit-{index}", "image": as_base64(png, data_url=index % 3 == 0)})
    return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """`rows` as JSON Lines at `path` (strings are written as they are, for broken lines)."""
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def _loop(handler_path: Path, source: Path) -> tuple[float, int]:
    """Seconds for a plain loop over `source`: parse each line, take out the id, call `predict`."""
    from serving.runtime.handlers import load_handler
    from serving.runtime.registry import ModelRuntime

    spec = load_handler(handler_path)
    model = ModelRuntime(spec, spec.artifacts).ensure_loaded()
    started = time.perf_counter()
    count = 0
    with source.open() as lines:
        for line in lines:
            payload = json.loads(line)
            payload.pop("id")
            # What the server does for one request: the handler's admit and prepare stages (if any), then predict.
            spec.predict(model, spec.prepared(model, payload))
            count += 1
    return time.perf_counter() - started, count


def _pipeline(handler_path: Path, source: Path, out: Path) -> tuple[float, int]:
    """Seconds for `score` on the DirectRunner over `source` (the pipeline's own model load included)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from serving.offline.model_handler import HandlerModelHandler
    from serving.offline.pipeline import ScoreJob, score

    handler = HandlerModelHandler(handler_path)
    summary = score(
        handler, ScoreJob(str(source), str(out / "scores"), str(out / "scores.errors"), "id"), PipelineOptions([])
    )
    if summary.dead_letters:
        raise RuntimeError(f"{summary.dead_letters} rows failed in the benchmark's pipeline")
    return summary.seconds, summary.scored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iris", type=int, default=20000, help="Iris rows (default %(default)s)")
    parser.add_argument("--digits", type=int, default=1000, help="Digits rows (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, taking turns; the median is shown")
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    load_before = os.getloadavg()
    table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, handler, rows in (
            ("Iris", PROJECT_ROOT / "handlers" / "iris.py", iris_rows(args.iris)),
            ("Digits", PROJECT_ROOT / "handlers" / "digits.py", digits_rows(args.digits)),
        ):
            source = write_jsonl(root / f"{name}.jsonl", rows)
            loop_rates, pipeline_rates, loads = [], [], []
            for run in range(args.runs):
                seconds, count = _loop(handler, source)
                loop_rates.append(count / seconds)
                out = root / f"{name}-{run}"
                out.mkdir()
                seconds, count = _pipeline(handler, source, out)
                pipeline_rates.append(count / seconds)
                loads.append(os.getloadavg()[0])
            loop, beam = statistics.median(loop_rates), statistics.median(pipeline_rates)
            table.append(
                {
                    "model": name,
                    "rows": len(rows),
                    "loop rows/s": round(loop),
                    "DirectRunner rows/s": round(beam),
                    "DirectRunner / loop": f"{beam / loop:.2f}x",
                    "load": f"{statistics.median(loads):.1f}",
                }
            )
            print(table[-1], flush=True)
    RESULTS.write_text(_report(table, args, load_before))
    print(f"wrote {RESULTS}")
    return 0


def _report(table: list[dict[str, Any]], args: argparse.Namespace, load_before: tuple[float, float, float]) -> str:
    import apache_beam

    header = list(table[0])
    lines = [
        "# Offline scoring: Beam's DirectRunner against a plain predict loop",
        "",
        f"Generated by `python -m bench.offline_scoring --iris {args.iris} --digits {args.digits} --runs {args.runs}` "
        f"on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, apache-beam {apache_beam.__version__}, "
        f"load average before the run {', '.join(f'{value:.1f}' for value in load_before)}. **The machine was "
        "loaded** (other sessions' test suites shared the cores): absolute rows/s are low and noisy; the ratio "
        "of the two, measured side by side and taking turns, is the figure to read.",
        "",
        "Both read the same JSON Lines file and parse every line. The loop calls the handler's `predict` one row "
        "at a time on a model loaded beforehand and writes nothing; the pipeline (`flask --app main score`'s, "
        "in process, `direct_num_workers=1`) also validates every row against INPUT_SCHEMA, batches rows into "
        "`predict_batch` calls (BATCH), writes result and dead-letter shards, and loads the model inside its "
        f"run. The median of {args.runs} runs each.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" if key == "model" else "---:" for key in header) + " |",
        *("| " + " | ".join(str(row[key]) for key in header) + " |" for row in table),
        "",
        "On Dataflow the same pipeline runs on as many workers as the data needs; the DirectRunner is for "
        "testing and small files.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
