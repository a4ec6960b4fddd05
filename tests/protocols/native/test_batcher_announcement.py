"""`POST /v1/<Name>` tells its model's batcher it is coming, inside the view, only once admitted.

The view enters `Inference.arriving(runtime)` after finding the model and before reading
the body: the prediction takes the announcement, and leaving the block any other way
withdraws it, so the batcher never waits for a request that will not come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from serving.config.api_keys import parse_key_specs
from serving.http.state import get_state
from serving.runtime.batching import Batcher
from tests.conftest import FIXTURE_HANDLERS

KEY = "arrival-secret-0123456789abcdef"


@pytest.fixture
def announcements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every `announce`, `withdraw` and announced `submit` the batchers see, in order."""
    seen: list[str] = []
    announce, withdraw, submit = Batcher.announce, Batcher.withdraw, Batcher.submit

    def _announce(self: Batcher) -> None:
        seen.append("announce")
        announce(self)

    def _withdraw(self: Batcher) -> None:
        seen.append("withdraw")
        withdraw(self)

    def _submit(self: Batcher, payload: Any, *, announced: bool = False) -> Any:
        seen.append("submit-announced" if announced else "submit")
        return submit(self, payload, announced=announced)

    monkeypatch.setattr(Batcher, "announce", _announce)
    monkeypatch.setattr(Batcher, "withdraw", _withdraw)
    monkeypatch.setattr(Batcher, "submit", _submit)
    return seen


@pytest.fixture
def batching_app(make_app: Callable[..., Flask]) -> Flask:
    app = make_app(
        handlers_dir=FIXTURE_HANDLERS / "batching",
        batching=True,
        api_keys=tuple(parse_key_specs(f"ops:{KEY}")),
    )
    get_state(app).registry.load_all()  # a model still loading is never announced
    return app


@pytest.mark.parametrize(
    ("body", "headers", "status", "expected"),
    [
        pytest.param({"x": 2}, {"X-API-Key": KEY}, 200, ["announce", "submit-announced"], id="taken-by-its-prediction"),
        pytest.param({"x": "two"}, {"X-API-Key": KEY}, 400, ["announce", "withdraw"], id="withdrawn-on-bad-input"),
        pytest.param({"x": 2}, {}, 401, [], id="refused-never-announced"),
    ],
)
def test_an_admitted_request_is_announced_and_then_taken_or_withdrawn(
    batching_app: Flask,
    announcements: list[str],
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    expected: list[str],
) -> None:
    response = batching_app.test_client().post("/v1/Gated", json=body, headers=headers)

    assert response.status_code == status
    assert announcements == expected
    batcher = get_state(batching_app).inference.batchers.get("Gated")  # type: ignore[union-attr]
    assert batcher is None or batcher.arriving() == 0


def test_the_app_state_is_frozen_once_built(batching_app: Flask) -> None:
    state = get_state(batching_app)

    with pytest.raises(AttributeError):
        state.jobs_enabled = True  # type: ignore[misc]
