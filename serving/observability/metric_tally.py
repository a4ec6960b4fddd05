"""Per-request observations summed in the process, written to prometheus-client in one go.

In multiprocess mode every `inc()` and `observe()` of prometheus-client takes a lock,
checks the process id (a system call) and writes the memory-mapped file its worker
shares with the scrapers: 0.7 us an `inc`, 1.5 us an `observe` (its buckets walked in
Python). A request records one count and three histogram observations (its latency, and
its model call's size and duration), which measured 10 us of a small request's 95 us in
the app (bench/NOTES.md). `Tally` adds each observation to plain numbers under one lock
(bucket found by `bisect`) and a thread writes the sums every `interval_s`: one write per
changed value a second, whatever the traffic.

What that costs: a scrape shows another worker's requests up to `interval_s` late (its
own are written before it answers), and a worker killed without an exit (SIGKILL, out of
memory) loses at most that long of counts. An exit that runs Python's `atexit` (a
graceful stop, `max_requests`) writes them first.

Hand-written because prometheus-client has no buffered mode. It adds to a histogram's
`_sum` and `_buckets` children, as the library's own `observe()` does; tests/observability/
test_metric_tally.py holds the exposition to what `observe()` would have written, so a
release that renames them fails there.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from serving.kit.forking import hold_across_fork, reset_in_forked_child

log = logging.getLogger("serving.observability.metrics")


class _HistogramSums:
    """One histogram child's pending observations: a count per bucket and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0


class Tally:
    """Counters, histograms and gauges of prometheus-client, updated in memory and written every `interval_s`.

    `inc(child)`, `observe(child, bounds, value)` and `set(child, value)` take the
    library's labelled children (`Counter.labels(...)` and the like) and the histogram's
    upper bounds (its `buckets`, `+Inf` last). `flush()` writes what is pending; the
    writer thread starts with the first observation in each process (after a fork too).
    """

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("a tally needs an interval above 0")
        self._interval_s = interval_s
        self._lock = threading.Lock()
        # Held while sums are written: a fork waits for a write in progress to end, so no
        # child starts with prometheus-client's own lock held by a thread it does not have.
        self._writing = threading.Lock()
        self._counts: dict[Any, int] = {}
        self._histograms: dict[Any, _HistogramSums] = {}
        self._gauges: dict[Any, float] = {}
        self._writer: threading.Thread | None = None
        self._stopped = threading.Event()
        hold_across_fork(self._writing)
        reset_in_forked_child(self._after_fork)
        # Through a weak reference, as the fork hooks: a test process builds many apps.
        atexit.register(_flush_if_alive, weakref.WeakMethod(self.flush))

    def inc(self, child: Any) -> None:
        """Add 1 to a counter child."""
        with self._lock:
            self._counts[child] = self._counts.get(child, 0) + 1
            if self._writer is None:
                self._start_writer()

    def observe(self, child: Any, bounds: Sequence[float], value: float) -> None:
        """Add `value` to a histogram child whose bucket upper bounds are `bounds`."""
        with self._lock:
            sums = self._histograms.get(child)
            if sums is None:
                sums = self._histograms[child] = _HistogramSums(len(bounds))
            # The first bucket whose upper bound is at least `value`, as `observe()` picks it.
            sums.counts[bisect.bisect_left(bounds, value)] += 1
            sums.total += value
            if self._writer is None:
                self._start_writer()

    def set(self, child: Any, value: float) -> None:
        """Set a gauge child (the last value set before a write is the one written)."""
        with self._lock:
            self._gauges[child] = value
            if self._writer is None:
                self._start_writer()

    def flush(self) -> None:
        """Write every pending value to prometheus-client now."""
        with self._writing:
            with self._lock:
                counts, self._counts = self._counts, {}
                histograms, self._histograms = self._histograms, {}
                gauges, self._gauges = self._gauges, {}
            for child, count in counts.items():
                child.inc(count)
            for child, sums in histograms.items():
                child._sum.inc(sums.total)
                for bucket, count in zip(child._buckets, sums.counts, strict=True):
                    if count:
                        bucket.inc(count)
            for child, value in gauges.items():
                child.set(value)

    def close(self) -> None:
        """Stop the writer thread after a last write."""
        self._stopped.set()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            writer.join()
        self.flush()

    def _start_writer(self) -> None:
        # Called with the lock held, so one thread starts it.
        self._writer = threading.Thread(target=self._write_every_interval, name="metrics-writer", daemon=True)
        self._writer.start()

    def _write_every_interval(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # a full disk must not end the writing for good
                log.exception("writing the metrics failed")

    def _after_fork(self) -> None:
        # The parent writes what it had pending; the child starts empty, with a lock no
        # parent thread can hold and its own writer once it observes something.
        self._lock = threading.Lock()
        self._counts, self._histograms, self._gauges = {}, {}, {}
        self._writer = None
        self._stopped = threading.Event()


def _flush_if_alive(flush: weakref.WeakMethod[Any]) -> None:
    bound = flush()
    if bound is not None:
        bound()
