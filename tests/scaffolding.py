"""A copy of the project to scaffold into, and commands run in it: for `new-model`'s tests.

The scaffolding tests (tests/cli/) and the scaffolded demo page's browser test (tests/web/)
write new models into a copy, never into this checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.servers import PROJECT_ROOT, base_env

# What a copy of the project needs for `flask --app main` and the generated tests to run.
PROJECT_PARTS = [
    "main.py",
    "gunicorn.conf.py",
    "pyproject.toml",
    "serving",
    "handlers",
    "models",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/servers.py",
    "tests/handlers/__init__.py",
    "tests/handlers/test_handler_contract.py",
]


def copy_project(copy: Path, extra: tuple[str, ...] = ()) -> Path:
    """Copy this project's code (not its .venv), and the `extra` parts, to the new directory `copy`."""
    for part in [*PROJECT_PARTS, *extra]:
        source = PROJECT_ROOT / part
        target = copy / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return copy


def run_in_copy(command: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run `command` in the copy `cwd`, with lazy model loading and quiet logs; never raises on failure."""
    # Lazy loading: the copy's other models need not load for scaffolding or these tests.
    env = base_env({"MODEL_LOADING": "lazy", "LOG_LEVEL": "WARNING"})
    env.pop("PYTHONPATH", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
