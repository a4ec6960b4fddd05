"""Rows per second: a table scored through BigQuery's route and `:predict` vs one row per request.

    .venv/bin/python -m bench.bigquery [--models Iris,Digits] [--seconds 10] [--rounds 3]

Starts the project's app under a real gunicorn (production settings: 2 workers of 8
threads, logs at INFO) on a free loopback port and, side by side in one run, for each
model measures:

- `single`: one row per `POST /v1/<Model>`, 16 clients (aiohttp, keep-alive);
- `bigquery`: the table through `POST /v1/bigquery/<Model>` by bench/bigquery_driver.py's
  stand-in, 500 rows a request, 16 requests at once, with BigQuery's retries;
- `predict`: the same batches as `{"instances": [...]}` to `POST /v1/models/<Model>:predict`.

The tables are varied: Iris rows are scikit-learn's 150 flowers with random jitter, Digits
rows are scikit-learn's 1,797 8x8 digits rendered as PNGs. Every bigquery reply is checked
against `POST /v1/<Model>`'s answer for its row. It prints rows/s and each route's ratio to
`single`, each the median of 3 rounds in which the three ways take turns; nothing leaves
127.0.0.1. A full run takes about 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import requests

from bench.bigquery_driver import StandIn, json_calls, mismatches, native_answers
from bench.run import GOOGLE_REQUEST_LOG
from tests.servers import free_port, gunicorn_command, running_server

CLIENTS = 16
ROWS_PER_REQUEST = 500


def iris_table(rows: int, seed: int = 20) -> list[dict[str, Any]]:
    """`rows` flowers: the data set's, each measurement moved by up to +/-5%."""
    from sklearn.datasets import load_iris

    rng = random.Random(seed)  # noqa: S311 - jitter for a benchmark, not a secret
    names = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    flowers = load_iris().data.tolist()
    return [
        {
            name: round(value * rng.uniform(0.95, 1.05), 2)
            for name, value in zip(names, rng.choice(flowers), strict=True)
        }
        for _ in range(rows)
    ]


def digits_table(rows: int) -> list[dict[str, Any]]:
    """`rows` images: scikit-learn's digits as base64 PNGs, in order, repeated as needed."""
    from sklearn.datasets import load_digits

    from models.digits.rendering import as_base64, png_from_features

    images = [as_base64(png_from_features(features)) for features in load_digits().data]
    return [{"image": images[i % len(images)]} for i in range(rows)]


async def _single(url: str, rows: Sequence[dict[str, Any]], seconds: float) -> int:
    """Rows answered by one-row requests from CLIENTS clients within `seconds`."""
    bodies = [json.dumps(row).encode() for row in rows]
    deadline = time.perf_counter() + seconds
    done = 0

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = index
        while time.perf_counter() < deadline:
            async with session.post(
                url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
            ) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url} answered {r.status}")
            done += 1
            i += CLIENTS

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(i, session) for i in range(CLIENTS)))
    return done


def single_rows_per_s(url: str, rows: Sequence[dict[str, Any]], seconds: float) -> float:
    started = time.perf_counter()
    done = asyncio.run(_single(url, rows, seconds))
    return done / (time.perf_counter() - started)


def predict_rows_per_s(url: str, rows: Sequence[dict[str, Any]]) -> float:
    """The table as `:predict` batches of ROWS_PER_REQUEST, CLIENTS at once."""
    batches = [rows[i : i + ROWS_PER_REQUEST] for i in range(0, len(rows), ROWS_PER_REQUEST)]
    sessions: dict[int, requests.Session] = {}

    def send(batch: Sequence[dict[str, Any]]) -> int:
        import threading

        session = sessions.setdefault(threading.get_ident(), requests.Session())
        response = session.post(url, data=orjson.dumps({"instances": list(batch)}), timeout=300,
                                headers={"Content-Type": "application/json"})  # fmt: skip
        response.raise_for_status()
        return len(orjson.loads(response.content)["predictions"])

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answered = sum(pool.map(send, batches))
    return answered / (time.perf_counter() - started)


def measure(base: str, model: str, rows: list[dict[str, Any]], seconds: float, rounds: int) -> dict[str, float]:
    """rows/s of the three ways for one model (the median of `rounds`), and how many replies were checked.

    The three ways take turns round by round, so that a burst of load from elsewhere on a
    shared machine falls on all of them rather than on one.
    """
    singles, bigqueries, predicts = [], [], []
    for _ in range(rounds):
        singles.append(single_rows_per_s(f"{base}/v1/{model}", rows, seconds))
        driver = StandIn(f"{base}/v1/bigquery/{model}", rows_per_request=ROWS_PER_REQUEST, concurrency=CLIENTS)
        report = driver.run(json_calls(rows))
        if len(report.replies) != len(rows):
            raise RuntimeError(f"{model}: {len(report.replies)} replies for {len(rows)} rows")
        bigqueries.append(report.rows_per_s)
        predicts.append(predict_rows_per_s(f"{base}/v1/models/{model}:predict", rows))
    sample = rows[:: max(1, len(rows) // 400)]
    expected = native_answers(base, model, sample)
    checked = report.replies[:: max(1, len(rows) // 400)]
    wrong = mismatches(checked, expected)
    if wrong or len(report.replies) != len(rows):
        raise RuntimeError(f"{model}: {len(wrong)} replies differ from POST /v1/{model}'s answers")
    return {
        "single": statistics.median(singles),
        "bigquery": statistics.median(bigqueries),
        "predict": statistics.median(predicts),
        "retries": report.retries,
        "checked": len(checked),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="Iris,Digits")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the one-row-per-request run")
    # Each table takes a few seconds, as the one-row run takes ten, so that the rate is a
    # steady one: a table's first requests open connections and its last ones leave cores
    # idle. 40,000 Iris rows took 0.2-0.3 s and five runs of one server ranged from 122,000
    # to 224,000 rows/s; 200,000 rows, 137,000 to 179,000. Digits: 6,000 images (12
    # requests) was only as long as the slowest worker's share of a handful of requests.
    parser.add_argument("--iris-rows", type=int, default=200_000)
    parser.add_argument("--digits-rows", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three ways; the median is kept")
    args = parser.parse_args(argv)

    tables = {"Iris": lambda: iris_table(args.iris_rows), "Digits": lambda: digits_table(args.digits_rows)}
    port = free_port()
    # As on Cloud Run, where Google's request log has a line for every request and the app
    # writes none of its own for a success (REQUEST_LOG_SAMPLE_RATE's `auto`; bench/run.py too).
    env = {"PORT": str(port), "HOST": "127.0.0.1", "BIGQUERY_TRUST_FRONT_END": "true", **GOOGLE_REQUEST_LOG}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(gunicorn_command(), port=port, log_path=Path(tmp) / "gunicorn.log", env=env) as server,
    ):
        results = {}
        for model in args.models.split(","):
            rows = tables[model]()
            single_rows_per_s(f"{server.url}/v1/{model}", rows, 1.0)  # warm up
            results[model] = measure(server.url, model, rows, args.seconds, args.rounds)
    print(f"{CLIENTS} clients; batches of {ROWS_PER_REQUEST} rows; gunicorn 2 workers x 8 threads on 127.0.0.1")
    print("| model | one row per POST /v1/<Model> | /v1/bigquery/<Model> | ratio | :predict | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model, r in results.items():
        print(
            f"| {model} | {r['single']:,.0f} rows/s | {r['bigquery']:,.0f} rows/s | {r['bigquery'] / r['single']:.1f}x "
            f"| {r['predict']:,.0f} rows/s | {r['predict'] / r['single']:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
