"""What every settings module shares: `SettingsError`, the `setting()` field and the project root.

A setting is a dataclass field whose metadata carries its environment variable, its
documentation (the generated configuration table) and its parser; `Settings.from_env()`
reads them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


def setting(
    env: str, default: Any, doc: str, parse: Callable[[str], Any] | None = None, *, secret: bool = False
) -> Any:
    """A settings field read from `env` with `parse` (default: the raw string)."""
    # A secret setting's value is left out of error messages and of the object's repr.
    return field(default=default, repr=not secret, metadata={"env": env, "doc": doc, "parse": parse, "secret": secret})
