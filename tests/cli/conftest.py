"""Fixtures for the `new-model` tests: a fresh copy of the project to scaffold into."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scaffolding import copy_project


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of this project's code (not its .venv) to scaffold into."""
    return copy_project(tmp_path / "project")
