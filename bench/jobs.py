"""Benchmark asynchronous jobs against a real gunicorn on loopback.

    .venv/bin/python -m bench.jobs                       # SQLite store in a temp dir
    .venv/bin/python -m bench.jobs --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python -m bench.jobs --jobs 1000 --clients 16

Submits `--jobs` XXXModel jobs (`Prefer: respond-async`) from `--clients` threads, then
polls until every job has finished. Prints the submit latency (what a client waits for
its 202), the submit rate, and the end-to-end completion rate (submit to the last job
succeeded). Bounded in count and time; it starts and stops its own server.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.servers import free_port, gunicorn_command, running_server


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--gunicorn-workers", default="2")
    parser.add_argument("--job-workers", default="2", help="JOBS_WORKERS per gunicorn worker")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        port = free_port()
        env = {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "GUNICORN_WORKERS": args.gunicorn_workers,
            "JOBS_WORKERS": args.job_workers,
            "JOBS_POLL_INTERVAL_S": "0.2",
            "JOBS_DATA_DIR": str(Path(tmp) / "data"),
            "LOG_LEVEL": "WARNING",
        }
        if args.database_url:
            env.update({"JOBS_STORE": "postgresql", "DATABASE_URL": args.database_url})
        with running_server(gunicorn_command(), port=port, log_path=Path(tmp) / "server.log", env=env) as server:
            url = f"{server.url}/v1/XXXModel"
            local = threading.local()

            def session() -> requests.Session:
                if not hasattr(local, "session"):
                    local.session = requests.Session()
                return local.session  # type: ignore[no-any-return]

            def submit(index: int) -> tuple[str, float]:
                started = time.perf_counter()
                response = session().post(
                    url, json={"name": f"bench-{index}"}, headers={"Prefer": "respond-async"}, timeout=30
                )
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                return response.json()["job_id"], elapsed

            began = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                submitted = list(pool.map(submit, range(args.jobs)))
            submit_seconds = time.perf_counter() - began

            pending = {job_id for job_id, _ in submitted}
            deadline = time.monotonic() + 600
            poller = requests.Session()
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    doc = poller.get(f"{server.url}/v1/jobs/{job_id}", timeout=30).json()
                    if doc["status"] == "succeeded":
                        pending.discard(job_id)
                    elif doc["status"] in ("failed", "canceled"):
                        raise SystemExit(f"job {job_id} ended {doc['status']}: {doc.get('error')}")
                if pending:
                    time.sleep(0.2)
            total_seconds = time.perf_counter() - began

    latencies = [elapsed * 1000 for _, elapsed in submitted]
    store = "postgresql" if args.database_url else "sqlite"
    print(
        f"store={store} jobs={args.jobs} clients={args.clients} gunicorn_workers={args.gunicorn_workers} "
        f"job_workers={args.job_workers}"
    )
    print(
        f"submit latency ms: p50={statistics.median(latencies):.1f} p95={_percentile(latencies, 0.95):.1f} "
        f"p99={_percentile(latencies, 0.99):.1f} max={max(latencies):.1f}"
    )
    print(f"submit rate: {args.jobs / submit_seconds:.0f} jobs/s")
    print(
        f"completed: {args.jobs - len(pending)}/{args.jobs} in {total_seconds:.1f} s "
        f"({(args.jobs - len(pending)) / total_seconds:.0f} jobs/s end to end)"
    )


if __name__ == "__main__":
    main()
