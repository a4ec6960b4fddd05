"""Prometheus metrics: what /metrics shows, in one process and merged across gunicorn workers."""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from serving.config.settings import SettingsError
from serving.http.state import get_state
from serving.observability.metrics import MULTIPROC_ENV, prepare_multiprocess_dir, remove_private_dir
from tests.conftest import FIXTURE_HANDLERS


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_model_and_status(client: Any) -> None:
    client.post("/v1/XXXModel", json={"name": "Leo"})
    client.post("/v1/XXXModel", json={"name": "Ada"})
    client.post("/v1/XXXModel", json={})
    client.get("/no/such/route")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = _samples(response.get_data(as_text=True))
    route = "/v1/<name>"
    assert _value(samples, "model_serving_requests_total", route=route, model="XXXModel", status="200") == 2
    assert _value(samples, "model_serving_requests_total", route=route, model="XXXModel", status="400") == 1
    assert _value(samples, "model_serving_requests_total", route="unmatched", model="", status="404") == 1
    latency = "model_serving_request_duration_seconds_count"
    assert _value(samples, latency, route=route, model="XXXModel", status="200") == 2


def test_every_model_call_is_a_batch_size_observation(client: Any) -> None:
    client.post("/v1/XXXModel", json={"name": "Leo"})

    samples = _samples(client.get("/metrics").get_data(as_text=True))

    assert _value(samples, "model_serving_batch_size_count", model="XXXModel") == 1
    assert _value(samples, "model_serving_batch_size_bucket", model="XXXModel", le="1.0") == 1
    assert _value(samples, "model_serving_batch_duration_seconds_count", model="XXXModel") == 1


def test_job_counts_come_from_the_count_job_api(app: Flask) -> None:
    metrics = get_state(app).metrics
    metrics.count_job("XXXModel", "queued")
    metrics.count_job("XXXModel", "queued")
    metrics.count_job("XXXModel", "succeeded")

    samples = _samples(app.test_client().get("/metrics").get_data(as_text=True))

    assert _value(samples, "model_serving_jobs_total", model="XXXModel", state="queued") == 2
    assert _value(samples, "model_serving_jobs_total", model="XXXModel", state="succeeded") == 1


def test_openmetrics_is_served_to_scrapers_that_ask_for_it(client: Any) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})

    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_each_app_counts_only_its_own_requests(make_app: Callable[..., Flask]) -> None:
    first, second = make_app().test_client(), make_app().test_client()
    first.post("/v1/XXXModel", json={"name": "Leo"})

    samples = _samples(second.get("/metrics").get_data(as_text=True))

    assert _value(samples, "model_serving_requests_total", route="/v1/<name>", model="XXXModel", status="200") == 0


def test_with_metrics_off_there_is_no_metrics_route(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics=False).test_client()
    client.post("/v1/XXXModel", json={"name": "Leo"})

    response = client.get("/metrics")

    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_a_metrics_dir_set_after_prometheus_client_was_imported_is_refused(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=MULTIPROC_ENV):
        make_app(metrics_dir=tmp_path)


# --- the multiprocess directory ---


def test_without_a_configured_dir_a_private_one_is_made_and_removed() -> None:
    path, private = prepare_multiprocess_dir(None)

    assert private
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert os.environ[MULTIPROC_ENV] == str(path)
    remove_private_dir(path)
    assert not path.exists()


def test_a_configured_dir_loses_old_metric_files_and_nothing_else(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    stale = ["counter_123.db", "histogram_123.db", "gauge_livesum_123.db", "summary_9.db"]
    kept = ["notes.txt", "counter_abc.db", "histogram_1.db.bak"]
    for name in stale + kept:
        (directory / name).write_text("x")
    outside = tmp_path / "precious.db"
    outside.write_text("keep")
    (directory / "counter_77.db").symlink_to(outside)

    path, private = prepare_multiprocess_dir(directory)

    assert (path, private) == (directory, False)
    assert sorted(p.name for p in directory.iterdir()) == sorted([*kept, "counter_77.db"])
    assert outside.read_text() == "keep"
    remove_private_dir(directory)  # never removes a configured directory
    assert directory.is_dir()


def test_a_missing_configured_dir_is_created(tmp_path: Path) -> None:
    path, _ = prepare_multiprocess_dir(tmp_path / "a" / "b")

    assert path.is_dir()


def test_preparing_again_in_the_same_process_keeps_the_counts(tmp_path: Path) -> None:
    path, private = prepare_multiprocess_dir(None)
    (path / "counter_1.db").write_text("live worker's counts")

    again = prepare_multiprocess_dir(path)  # gunicorn re-reads its config file on SIGHUP

    assert again == (path, private)
    assert (path / "counter_1.db").exists()
    remove_private_dir(path)


def test_a_configured_path_that_is_a_file_names_the_variable(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")

    with pytest.raises(SettingsError, match=f"{MULTIPROC_ENV}="):
        prepare_multiprocess_dir(target)


# --- end to end: real gunicorn workers ---


def _metrics_dir_from_log(log: str) -> Path:
    match = re.search(r"metrics directory: (\S+)", log)
    assert match, log[-2000:]
    return Path(match.group(1))


def _scrape_until_counted(url: str, requests_expected: int, within_s: float) -> dict[Any, float]:
    """Scrape until `requests_expected` Slow requests show (each worker writes its counts every METRICS_WRITE_S)."""
    deadline = time.monotonic() + within_s
    while True:
        samples = _samples(requests.get(url + "/metrics", timeout=5).text)
        counted = _value(samples, "model_serving_requests_total", route="/v1/<name>", model="Slow", status="200")
        if counted >= requests_expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def _call_slow(url: str, count: int) -> list[int]:
    def call(x: int) -> int:
        response = requests.post(url + "/v1/Slow", json={"x": x}, timeout=30)
        assert response.status_code == 200
        return int(response.json()["result"])

    with ThreadPoolExecutor(max_workers=24) as pool:
        return list(pool.map(call, range(count)))


@pytest.mark.e2e
def test_gunicorn_workers_share_counts_and_show_requests_batched(start_gunicorn: Callable[..., Any]) -> None:
    env = {"HANDLERS_DIR": str(FIXTURE_HANDLERS / "batching"), "GUNICORN_THREADS": "16", "METRICS_WRITE_S": "0.2"}
    with start_gunicorn(env) as server:
        directory = _metrics_dir_from_log(server.log())
        results = _call_slow(server.url, 96)
        written_by = time.monotonic() + 0.2
        samples = _scrape_until_counted(server.url, 96, within_s=5)
        counted_after = time.monotonic() - written_by
        pids = {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob("counter_*.db")}

    assert results == [x + 1 for x in range(96)]
    # One scrape answered by one worker counts every worker's requests, within the write interval.
    assert _value(samples, "model_serving_requests_total", route="/v1/<name>", model="Slow", status="200") == 96
    assert counted_after < 2.0, f"counted {counted_after:.2f} s after the interval"
    calls = _value(samples, "model_serving_batch_size_count", model="Slow")
    batched = _value(samples, "model_serving_batch_size_sum", model="Slow")
    assert batched == 96
    assert calls < 96, "no request was batched with another"
    assert calls - _value(samples, "model_serving_batch_size_bucket", model="Slow", le="1.0") > 0
    assert pids, "workers wrote no metric files"
    assert not directory.exists(), "the private metrics directory outlived gunicorn"


def _written(directory: Path) -> dict[Any, float]:
    """What the workers have written to `directory` so far, as a scrape would merge it."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return _samples(generate_latest(registry).decode())


@pytest.mark.e2e
def test_counts_a_worker_has_not_written_yet_are_written_when_it_stops(
    start_gunicorn: Callable[..., Any], tmp_path: Path
) -> None:
    directory = tmp_path / "metrics"
    env = {
        "HANDLERS_DIR": str(FIXTURE_HANDLERS / "batching"),
        MULTIPROC_ENV: str(directory),
        "METRICS_WRITE_S": "60",
        "GUNICORN_WORKERS": "1",
    }
    requests_total = {"route": "/v1/<name>", "model": "Slow", "status": "200"}
    with start_gunicorn(env) as server:
        _call_slow(server.url, 40)
        while_serving = _written(directory)
    after_stop = _written(directory)

    assert _value(while_serving, "model_serving_requests_total", **requests_total) == 0
    assert _value(after_stop, "model_serving_requests_total", **requests_total) == 40
    assert _value(after_stop, "model_serving_batch_size_sum", model="Slow") == 40


@pytest.mark.e2e
def test_a_dead_workers_queue_gauge_is_dropped(start_gunicorn: Callable[..., Any], tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    env = {"HANDLERS_DIR": str(FIXTURE_HANDLERS / "batching"), MULTIPROC_ENV: str(directory)}
    with start_gunicorn(env) as server:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda x: requests.post(server.url + "/v1/Slow", json={"x": x}, timeout=30), range(48)))
        gauges = list(directory.glob("gauge_livesum_*.db"))
        assert gauges, "no worker queued a request"
        pid = int(gauges[0].stem.rsplit("_", 1)[1])

        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while gauges[0].exists() and time.monotonic() < deadline:
            time.sleep(0.05)

        assert not gauges[0].exists()
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 200
    assert directory.is_dir(), "a configured directory must survive gunicorn"
