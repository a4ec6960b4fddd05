"""The tutorial's example model: greets someone by name."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class XXXModel:
    """The tutorial's `XXXModel`: `hello(name)` returns `"Hello, <name>!"`."""

    def __init__(self) -> None:
        log.info("Initializing XXX Model ...")
        log.info("XXX Model Initialized.")

    def hello(self, name: str) -> str:
        """Greet `name`."""
        return f"Hello, {name}!"
