"""bench/offline_scoring.py at a tiny size: it measures both sides and writes its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.offline.conftest import BEAM_MISSING

pytest.importorskip("apache_beam", reason=BEAM_MISSING)

from bench import offline_scoring

pytestmark = pytest.mark.e2e


def test_a_small_run_reports_both_rates_and_their_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline_scoring, "RESULTS", tmp_path / "RESULTS-offline.md")

    assert offline_scoring.main(["--iris", "60", "--digits", "20", "--runs", "1"]) == 0

    report = (tmp_path / "RESULTS-offline.md").read_text()
    assert "**The machine was loaded**" in report
    rows = [line for line in report.splitlines() if line.startswith(("| Iris | 60 |", "| Digits | 20 |"))]
    assert len(rows) == 2
    assert all(line.split(" | ")[4].endswith("x") for line in rows)


def test_rows_are_varied_and_keyed() -> None:
    iris = offline_scoring.iris_rows(200)
    digits = offline_scoring.digits_rows(20)

    assert len({tuple(sorted(row.items())) for row in iris}) == 200
    assert len({row["id"] for row in digits}) == 20
    assert len({row["image"] for row in digits}) >= 15  # sizes and pens vary; a small digit may repeat
