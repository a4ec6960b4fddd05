"""Code, docs and config that send a reader to a test file name one that exists.

Checked: the code (serving/, handlers/, models/, bench/, bin/, .ci/, the tests), the manual
(docs/*.md), and the files at the top (README.md, Makefile, the deploy files, the
requirements), so a moved or renamed test cannot leave a stale path behind.
"""

from __future__ import annotations

import re
from pathlib import Path

from serving.config.settings import PROJECT_ROOT

CITED = re.compile(r"\btests/[\w/]+\.py\b")
FOLDERS = ("serving", "handlers", "models", "bench", "bin", ".ci", "docs", "tests")
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".yaml", ".yml", ".sh"}
SCRIPT_FOLDERS = {"bin", ".ci"}  # executables without a suffix
# What `flask new-model` writes into the reader's own project in the docs' examples and in
# the scaffolding tests' copies: never files of this repository.
WRITTEN_BY_NEW_MODEL = {
    "tests/handlers/test_image_tagger.py",
    "tests/handlers/test_flower_kind.py",
    "tests/handlers/test_summarizer.py",
}


def _sources() -> list[Path]:
    top = [path for path in PROJECT_ROOT.iterdir() if path.is_file()]
    nested = [
        path
        for folder in FOLDERS
        for path in (PROJECT_ROOT / folder).rglob("*")
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.parent.name in SCRIPT_FOLDERS)
    ]
    return top + nested


def test_cited_test_files_exist() -> None:
    sources = _sources()
    missing = {
        f"{source.relative_to(PROJECT_ROOT)}: {cited}"
        for source in sources
        for cited in CITED.findall(source.read_text(errors="replace"))
        if cited not in WRITTEN_BY_NEW_MODEL and not (PROJECT_ROOT / cited).is_file()
    }

    assert {"README.md", "docs/development.md", "Makefile"} <= {str(s.relative_to(PROJECT_ROOT)) for s in sources}
    assert missing == set()
