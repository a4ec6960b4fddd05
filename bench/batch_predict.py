"""Instances per second: one `:predict` request carrying N instances vs N single requests.

Starts the project's app under a real gunicorn on a free loopback port (1 worker) and,
for each batch size, sends the same number of instances both ways over one keep-alive
connection, then prints instances/s and the median request latency. Every loop is
bounded; nothing leaves 127.0.0.1.

    .venv/bin/python -m bench.batch_predict [--model XXXModel] [--instances 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from tests.servers import free_port, gunicorn_command, running_server


def _example(session: requests.Session, base: str, model: str) -> Any:
    described = session.get(f"{base}/v1/models/{model}", timeout=30).json()
    return described["input_schema"]["examples"][0]


def _measure(session: requests.Session, url: str, bodies: list[Any]) -> tuple[float, float]:
    """(seconds for all bodies, median seconds per request)."""
    latencies = []
    started = time.perf_counter()
    for body in bodies:
        began = time.perf_counter()
        response = session.post(url, json=body, timeout=120)
        latencies.append(time.perf_counter() - began)
        response.raise_for_status()
    return time.perf_counter() - started, statistics.median(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="XXXModel")
    parser.add_argument("--instances", type=int, default=2000, help="instances sent per batch size and way")
    parser.add_argument("--sizes", default="1,10,100,1000", help="comma-separated batch sizes")
    args = parser.parse_args()

    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_WORKERS": "1", "LOG_LEVEL": "WARNING"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(gunicorn_command(), port=port, log_path=Path(tmp) / "gunicorn.log", env=env) as server,
        requests.Session() as session,
    ):
        example = _example(session, server.url, args.model)
        single_url = f"{server.url}/v1/{args.model}"
        batch_url = f"{server.url}/v1/models/{args.model}:predict"
        _measure(session, single_url, [example] * 50)  # warm up
        print(f"model {args.model}, {args.instances} instances per row, 1 gunicorn worker")
        print(f"{'batch size':>10} {'batched inst/s':>15} {'median ms':>10} {'single inst/s':>14} {'median ms':>10}")
        for size in (int(s) for s in args.sizes.split(",")):
            requests_needed = max(1, args.instances // size)
            batch_s, batch_median = _measure(session, batch_url, [{"instances": [example] * size}] * requests_needed)
            single_s, single_median = _measure(session, single_url, [example] * (requests_needed * size))
            sent = requests_needed * size
            print(
                f"{size:>10} {sent / batch_s:>15.0f} {batch_median * 1000:>10.2f} "
                f"{sent / single_s:>14.0f} {single_median * 1000:>10.2f}"
            )


if __name__ == "__main__":
    main()
