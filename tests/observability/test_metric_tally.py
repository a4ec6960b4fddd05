"""The in-process tally of metrics: what it writes equals what prometheus-client's own calls write."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serving.observability.metric_tally import Tally
from serving.observability.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS

INF = float("inf")


def _metrics(registry: CollectorRegistry) -> tuple[Any, Any, Any, Any]:
    counter = Counter("requests", "r", ["route"], registry=registry)
    latency = Histogram("latency", "l", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    sizes = Histogram("sizes", "s", ["model"], buckets=BATCH_SIZE_BUCKETS, registry=registry)
    depth = Gauge("depth", "d", ["model"], registry=registry)
    return counter, latency, sizes, depth


def _exposition(registry: CollectorRegistry) -> str:
    # `_created` is the time each child was made: not a value either way writes.
    return "\n".join(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flushed_tally_writes_what_the_librarys_own_calls_write(seed: int) -> None:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    counter, latency, sizes, depth = _metrics(direct)
    t_counter, t_latency, t_sizes, t_depth = _metrics(tallied)
    tally = Tally(3600)
    draw = random.Random(seed)  # noqa: S311 - reproducible test values, not secrets
    # Values on the bucket bounds too: `le` is inclusive, and the tally must agree.
    values = [draw.choice((*LATENCY_BUCKETS, draw.expovariate(20), draw.uniform(0, 100))) for _ in range(2000)]
    for index, value in enumerate(values):
        route = ("/a", "/b")[index % 2]
        size = draw.choice((*BATCH_SIZE_BUCKETS, draw.randint(1, 10_000)))
        counter.labels(route).inc()
        latency.labels(route).observe(value)
        sizes.labels("m").observe(size)
        depth.labels("m").set(index % 7)
        tally.inc(t_counter.labels(route))
        tally.observe(t_latency.labels(route), (*LATENCY_BUCKETS, INF), value)
        tally.observe(t_sizes.labels("m"), (*BATCH_SIZE_BUCKETS, INF), size)
        tally.set(t_depth.labels("m"), index % 7)

    assert _exposition(direct) != _exposition(tallied)  # nothing written before the flush
    tally.flush()
    assert _exposition(direct) == _exposition(tallied)
    tally.close()


def test_the_writer_thread_writes_within_the_interval() -> None:
    registry = CollectorRegistry()
    counter = Counter("requests", "r", registry=registry)
    tally = Tally(0.05)
    for _ in range(5):
        tally.inc(counter)
    deadline = time.monotonic() + 5
    while counter._value.get() < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counter._value.get() == 5
    tally.close()


def test_a_forked_child_starts_empty_and_writes_its_own_counts_only() -> None:
    registry = CollectorRegistry()
    counter = Counter("requests", "r", registry=registry)
    tally = Tally(3600)
    tally.inc(counter)  # pending in the parent when it forks
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the parent's pending count must not be written
        try:
            tally.inc(counter)
            tally.flush()
            os.write(writer, str(counter._value.get()).encode())
        finally:
            os._exit(0)
    os.close(writer)
    child_saw = os.read(reader, 32).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    tally.close()
    assert child_saw == "1.0"
    assert counter._value.get() == 1.0


def test_an_interval_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        Tally(0)


class _SlowCounter:
    """A counter child whose write takes a while, as a write to a slow disk would."""

    def __init__(self) -> None:
        self.writing = threading.Event()
        self.written = False

    def inc(self, amount: float = 1) -> None:
        self.writing.set()
        time.sleep(0.3)
        self.written = True


def test_a_fork_waits_for_a_write_in_progress() -> None:
    # Otherwise a child could start with prometheus-client's lock held by the writing
    # thread, which the child does not have: its first count would wait forever.
    tally = Tally(3600)
    counter = _SlowCounter()
    tally.inc(counter)
    writer = threading.Thread(target=tally.flush)
    writer.start()
    assert counter.writing.wait(5)
    reader, pipe = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(pipe, b"written" if counter.written else b"mid-write")
        finally:
            os._exit(0)
    os.close(pipe)
    seen = os.read(reader, 32)
    os.close(reader)
    os.waitpid(pid, 0)
    writer.join()
    tally.close()
    assert seen == b"written"
