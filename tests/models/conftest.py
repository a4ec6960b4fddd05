"""Fixtures for the example models: each handler's `setup()` runs once per test session."""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any

import pytest

from serving.config.settings import PROJECT_ROOT

HANDLER_MODULES = ("handlers.iris", "handlers.digits", "handlers.sentence_embedding")


def handler(module_name: str) -> types.ModuleType:
    """A handler module, imported as a plain module (the core imports it by file path)."""
    return importlib.import_module(module_name)


def require_handler_packages(module: types.ModuleType) -> None:
    """Skip, naming what is missing, when a handler's REQUIRES are not installed."""
    for name in getattr(module, "REQUIRES", ()):
        pytest.importorskip(name, reason=f"{module.NAME} needs {name}: pip install -r requirements.txt")


@pytest.fixture(scope="session")
def load_model() -> Callable[[str], Any]:
    """`load_model("handlers.iris")`: that handler's model, set up on first use."""
    cache: dict[str, Any] = {}

    def load(module_name: str) -> Any:
        module = handler(module_name)
        require_handler_packages(module)
        if module_name not in cache:
            # A handler with ARTIFACTS takes its local directory, as the server gives it.
            artifacts = getattr(module, "ARTIFACTS", None)
            cache[module_name] = module.setup(PROJECT_ROOT / artifacts) if artifacts else module.setup()
        return cache[module_name]

    return load


@pytest.fixture(scope="session")
def iris_model(load_model: Callable[[str], Any]) -> Any:
    return load_model("handlers.iris")


@pytest.fixture(scope="session")
def digits_model(load_model: Callable[[str], Any]) -> Any:
    return load_model("handlers.digits")


@pytest.fixture(scope="session")
def embedder(load_model: Callable[[str], Any]) -> Any:
    return load_model("handlers.sentence_embedding")
