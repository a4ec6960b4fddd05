"""Load and faults at reduced size (bench/resilience.py --smoke): the guarantees must hold.

What each scenario proves is in bench/resilience.py; here each runs on the real gunicorn
and its correctness figures are asserted (failed requests, jobs lost, the replacement
worker, the exit after SIGTERM). Timing figures are reported, never asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import resilience
from tests.conftest import require_service

pytestmark = pytest.mark.e2e


def test_soak_near_saturation_has_no_failures(tmp_path: Path) -> None:
    result = resilience.soak(tmp_path, duration_s=8)

    assert result.problems == []
    assert result.requests > 100
    assert result.failures == 0
    assert result.rss_start_mb is not None  # reported in RESULTS-resilience.md
    assert result.rss_end_mb is not None


def test_killed_worker_is_replaced_and_no_accepted_job_is_lost(tmp_path: Path) -> None:
    result = resilience.kill_worker(tmp_path, duration_s=4.5, jobs=8)

    assert result.problems == []
    assert result.failures <= result.allowed_failures
    assert result.jobs_accepted == result.jobs_completed
    assert result.jobs_accepted is not None
    assert result.jobs_accepted >= 8


def test_jobs_complete_across_a_database_restart(tmp_path: Path) -> None:
    reason = resilience.postgres_available()
    require_service(reason is None, f"a private PostgreSQL server cannot be started: {reason}")

    result = resilience.database_restart(tmp_path, jobs=8)

    assert result.problems == []
    assert result.jobs_accepted == result.jobs_completed
    assert result.jobs_accepted is not None
    assert result.jobs_accepted >= 8


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    result = resilience.graceful_shutdown(tmp_path)

    assert result.problems == []
    assert result.requests > 0  # requests were in flight at SIGTERM
    assert result.failures == 0


def test_results_table_has_a_row_per_scenario() -> None:
    rows = [
        resilience.Result("soak", "1 x 1 s", requests=5, rss_start_mb=10.0, rss_end_mb=10.5),
        resilience.Result(
            "kill-worker",
            "x",
            failures=1,
            allowed_failures=8,
            jobs_accepted=3,
            jobs_completed=2,
            problems=["jobs not completed"],
        ),
    ]

    text = resilience.markdown(rows, "python -m bench.resilience --smoke")

    assert "| soak | 1 x 1 s | 5 | 0 (0) | - | 10.0 → 10.5 | - |" in text
    assert "| 3 → 2 |" in text
    assert "BROKEN: jobs not completed" in text
