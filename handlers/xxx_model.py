"""Greets someone by name: the tutorial's example model."""

from __future__ import annotations

from typing import Any

from models.greeter import XXXModel

NAME = "XXXModel"  # served at POST /v1/XXXModel, as in the tutorial
VERSION = "1.0.0"
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "Who to greet."}},
    "required": ["name"],
    "examples": [{"name": "Leo"}],
}
OUTPUT_SCHEMA: dict[str, Any] = {"type": "string", "examples": ["Hello, Leo!"]}
# A string format cannot hang: no time budget, so calls stay on the request thread
# instead of being handed to a call thread and back (docs/security.md, "Time budget").
TIMEOUT_S = 0


def setup() -> XXXModel:
    """Build the model once per process."""
    return XXXModel()


def predict(model: XXXModel, payload: dict[str, Any]) -> str:
    """`Hello, <name>!`"""
    return model.hello(payload["name"])


def predict_batch(model: XXXModel, payloads: list[dict[str, Any]]) -> list[str]:
    """One greeting per payload, in order."""
    return [model.hello(payload["name"]) for payload in payloads]
