"""How a CPU-heavy model should run under gunicorn: workers x threads x ONNX threads x batch.

    python -m bench.heavy                      # SentenceEmbedding, the configurations below
    python -m bench.heavy --seconds 8 --runs 3 # longer, steadier runs

Starts this project (every handler, app.yaml's settings) once per configuration, with
GUNICORN_WORKERS, GUNICORN_THREADS, ONNX_INTRA_OP_THREADS, BATCH_MAX_SIZE and
BATCH_MAX_LATENCY_MS set from it, drives `POST /v1/SentenceEmbedding` with wrk at each
connection count, and prints one markdown row per (configuration, connections):
requests/s, p50/p99, requests per model call (from /metrics) and the server's CPU time
per request (utime + stime of master and workers from /proc). CPU per request is the
steadiest of these on a shared machine: it does not move with other work, while
throughput and latency do. Nothing is asserted; docs/performance-heavy-models.md holds
the numbers and the choice made from them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.run import (
    APPS,
    PROJECT,
    WORKLOADS,
    WrkRun,
    batch_counts,
    machine,
    mean_batch,
    process_cpu_seconds,
    run_wrk,
    serving,
)


@dataclass(frozen=True)
class Config:
    """One way to run the model: processes, their threads, ONNX Runtime's threads, batching."""

    workers: int
    threads: int
    intra_op: int
    batch: int
    wait_ms: float

    def env(self) -> dict[str, str]:
        return {
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            "ONNX_INTRA_OP_THREADS": str(self.intra_op),
            "BATCH_MAX_SIZE": str(self.batch),
            "BATCH_MAX_LATENCY_MS": f"{self.wait_ms:g}",
        }

    def label(self) -> str:
        return f"{self.workers}w x {self.threads}t, ORT {self.intra_op}, batch {self.batch}/{self.wait_ms:g} ms"


CONFIGS = [
    Config(2, 8, 1, 16, 10),  # the default: one process per core, ONNX Runtime shares the cores
    Config(1, 16, 2, 16, 10),  # one process, both cores to one ONNX Runtime call
    Config(1, 16, 2, 32, 10),
    Config(2, 8, 1, 32, 10),
    Config(2, 8, 1, 8, 10),
    Config(2, 8, 2, 16, 10),  # oversubscribed: two processes, each with two ONNX threads
    Config(2, 8, 1, 16, 0),  # no waiting for announced requests
]


def measure(config: Config, connections: Sequence[int], seconds: float, runs: int, workdir: Path) -> list[str]:
    """One markdown row per connection count for `config`."""
    workload = WORKLOADS["SentenceEmbedding"]
    body = workdir / "body.json"
    body.write_bytes(workload.make_body())
    rows = []
    with serving(APPS[PROJECT], workdir / "server.log", timeout=120, extra_env=config.env()) as server:
        url = f"{server.url}/v1/{workload.model}"
        run_wrk(url, body, max(connections), 2.0, 2)  # warm-up: every worker makes its session
        for count in connections:
            results: list[tuple[WrkRun, float, float | None]] = []
            for _ in range(runs):
                pids = [server.process.pid, *server.workers()]
                before_cpu, before_batches = process_cpu_seconds(pids), batch_counts(server.url, workload.model)
                result = run_wrk(url, body, count, seconds, 2)
                cpu = process_cpu_seconds(pids) - before_cpu
                after_batches = batch_counts(server.url, workload.model)
                batches = mean_batch(before_batches, after_batches) if before_batches else None
                results.append((result, cpu / max(result.requests, 1) * 1000, batches))
            result, cpu_ms, batch = sorted(results, key=lambda item: item[0].rps)[len(results) // 2]
            load = os.getloadavg()[0]
            rows.append(
                f"| {config.label()} | {count} | {result.rps:.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} "
                f"| {result.errors} | {batch or 0:.1f} | {cpu_ms:.2f} | {load:.1f} |"
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="16,64")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1, help="runs per row; the median by throughput is shown")
    parser.add_argument("--configs", default="", help="comma-separated indexes into CONFIGS (default all)")
    args = parser.parse_args(argv)
    if WORKLOADS["SentenceEmbedding"].missing():
        print("models/sentence_embedding/model.onnx is missing: make models", file=sys.stderr)
        return 2
    chosen = [CONFIGS[int(i)] for i in args.configs.split(",") if i] or CONFIGS
    connections = [int(c) for c in args.connections.split(",")]
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine()}")
    print()
    print("| configuration | clients | req/s | p50 ms | p99 ms | errors | requests/call | CPU ms/request | load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for config in chosen:
        with tempfile.TemporaryDirectory(prefix="bench-heavy-") as scratch:
            for row in measure(config, connections, args.seconds, args.runs, Path(scratch)):
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
