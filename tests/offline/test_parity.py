"""The score command against the HTTP API: 10,000 Iris rows and 500 Digits images, answer for answer.

Each file is scored by `flask --app main score` (through the app's CLI runner, in this
process, on the DirectRunner); every result is compared with what `POST /v1/<Model>`
answers for the same payload (Flask's test client on an app of the same handlers),
including `model_version` against `X-Model-Version`. Labels and digits must be equal;
probabilities equal within 1e-6 (float32 gives about 7 digits): the pipeline calls `predict_batch` on
many rows, a single request `predict` on one, and ONNX Runtime's float32 sums can differ in
the last bit between a batch and a single row, as they do between the server's own
batched and unbatched requests. A sprinkling of invalid rows must
end up in the dead-letter output with their reasons, and the server must refuse exactly
those (400).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bench.offline_scoring import digits_rows, iris_rows, write_jsonl
from tests.offline.conftest import BEAM_MISSING, read_shards

pytest.importorskip("apache_beam", reason=BEAM_MISSING)

pytestmark = pytest.mark.e2e

# (row, the reason's beginning) spread through the Iris file.
IRIS_INVALID: list[tuple[Any, str]] = [
    (
        {"id": "bad-0", "sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4},
        "invalid input at $: 'petal_width'",
    ),
    (
        {"id": "bad-1", "sepal_length": "5.1", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        "invalid input at $.sepal_length",
    ),
    (
        {"id": "bad-2", "sepal_length": 51, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        "invalid input at $.sepal_length: 51 is greater than the maximum of 30",
    ),
    (
        {
            "id": "bad-3",
            "sepal_length": 5.1,
            "sepal_width": 3.5,
            "petal_length": 1.4,
            "petal_width": 0.2,
            "colour": "blue",
        },
        "invalid input at $: Additional properties",
    ),
    ({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}, "no 'id' field"),
    ("{not json", "not JSON"),
]
DIGITS_INVALID: list[tuple[Any, str]] = [
    ({"id": "bad-png", "image": "aGVsbG8gd29ybGQ="}, "the model could not use this input"),
    ({"id": "bad-empty", "image": ""}, "invalid input at $.image"),
    ({"id": "bad-type", "image": 7}, "invalid input at $.image"),
]


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(model_loading="lazy")


def _score(
    app: Flask, tmp_path: Path, model: str, rows: list[Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    source = write_jsonl(tmp_path / f"{model}.jsonl", rows)
    out = tmp_path / "out" / model
    result = app.test_cli_runner().invoke(
        args=["score", model, "--input", str(source), "--output", str(out), "--key", "id"]
    )
    assert result.exit_code == 0, result.output
    return read_shards(out), read_shards(out.parent / f"{model}.errors")


def _check(
    app: Flask,
    model: str,
    rows: list[Any],
    invalid: list[tuple[Any, str]],
    results: list[dict[str, Any]],
    dead: list[dict[str, Any]],
) -> None:
    client = app.test_client()
    by_key = {row["id"]: row for row in rows if isinstance(row, dict) and "id" in row}
    assert len(results) + len(dead) == len(rows)
    assert len({r["key"] for r in results}) == len(results)
    for record in results:
        payload = {k: v for k, v in by_key[record["key"]].items() if k != "id"}
        response = client.post(f"/v1/{model}", json=payload)
        assert response.status_code == 200, (record["key"], response.get_json())
        _assert_same_answer(record["result"], response.get_json()["result"], record["key"])
        assert record["model_version"] == response.headers["X-Model-Version"]
    reasons = {record["line"]: record["error"] for record in dead}
    for row, reason in invalid:
        line = row if isinstance(row, str) else json.dumps(row)
        assert reasons[line].startswith(reason), (line, reasons[line])
        if isinstance(row, dict) and "id" in row:
            refused = client.post(f"/v1/{model}", json={k: v for k, v in row.items() if k != "id"})
            assert refused.status_code == 400
    assert len(reasons) == len(invalid)


def _assert_same_answer(scored: dict[str, Any], answered: dict[str, Any], key: str) -> None:
    assert scored.keys() == answered.keys(), key
    for field, value in answered.items():
        if field == "probabilities":
            assert scored[field] == pytest.approx(value, rel=0, abs=1e-6), key
        else:
            assert scored[field] == value, key


def _sprinkle(rows: list[Any], invalid: list[tuple[Any, str]]) -> list[Any]:
    mixed = list(rows)
    step = len(rows) // (len(invalid) + 1)
    for index, (row, _) in enumerate(invalid, start=1):
        mixed.insert(index * step, row)
    return mixed


def test_10000_iris_rows_score_as_the_api_answers(app: Flask, tmp_path: Path) -> None:
    rows = _sprinkle(iris_rows(10_000), IRIS_INVALID)

    results, dead = _score(app, tmp_path, "Iris", rows)

    assert len(results) == 10_000
    _check(app, "Iris", rows, IRIS_INVALID, results, dead)


def test_500_digits_images_score_as_the_api_answers(app: Flask, tmp_path: Path) -> None:
    rows = _sprinkle(digits_rows(500), DIGITS_INVALID)

    results, dead = _score(app, tmp_path, "Digits", rows)

    assert len(results) == 500
    assert {r["result"]["digit"] for r in results} == set(range(10))
    _check(app, "Digits", rows, DIGITS_INVALID, results, dead)
