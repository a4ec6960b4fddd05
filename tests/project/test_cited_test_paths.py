"""Docstrings and comments that send a reader to a test file name one that exists."""

from __future__ import annotations

import re

from serving.config.settings import PROJECT_ROOT

CITED = re.compile(r"\btests/[\w/]+\.py\b")


def test_cited_test_files_exist() -> None:
    sources = [
        path
        for folder in ("serving", "handlers", "models", "bench", "bin")
        for path in (PROJECT_ROOT / folder).rglob("*")
        if path.is_file() and (path.suffix == ".py" or path.parent.name == "bin")
    ]
    missing = {
        f"{source.relative_to(PROJECT_ROOT)}: {cited}"
        for source in sources
        for cited in CITED.findall(source.read_text(errors="replace"))
        if not (PROJECT_ROOT / cited).is_file()
    }

    assert sources
    assert missing == set()
