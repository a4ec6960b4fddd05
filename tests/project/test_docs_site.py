"""The manual: docs/ builds with `mkdocs build --strict`, and README.md stays a front door
whose links into docs/ lead somewhere and whose tutorial requests answer as printed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PROJECT_ROOT, ServerProcess

README = PROJECT_ROOT / "README.md"
# `[text](docs/page.md)` or `[text](docs/page.md#anchor)`: the README's links into the manual.
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+\.md)(?:#([^)\s]+))?\)")


@dataclass(frozen=True)
class Build:
    """One run of `mkdocs build --strict`: its exit code, output and site directory."""

    returncode: int
    output: str
    site: Path


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The manual built once for this module, strictly, into a temporary directory."""
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml", "--site-dir", str(site)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Build(result.returncode, result.stdout + result.stderr, site)


def test_manual_builds_strictly(build: Build) -> None:
    # --strict turns every warning into a failure: a link to a missing page, file or heading.
    assert build.returncode == 0, build.output
    assert (build.site / "index.html").is_file()
    assert (build.site / "configuration.html").is_file()


def test_readme_links_into_docs_lead_to_pages_and_headings(build: Build) -> None:
    links = DOCS_LINK.findall(README.read_text())
    broken = []
    for target, anchor in links:
        page = PROJECT_ROOT / target
        html = build.site / Path(target).relative_to("docs").with_suffix(".html")
        if not page.is_file() or not html.is_file():
            broken.append(target)
        elif anchor and f'id="{anchor}"' not in html.read_text():
            broken.append(f"{target}#{anchor}")

    assert len(links) >= 10  # the README links every page of the manual
    assert broken == []


def test_readme_is_the_short_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_every_nav_page_is_a_file() -> None:
    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", (PROJECT_ROOT / "mkdocs.yml").read_text(), flags=re.MULTILINE)

    assert "index.md" in nav
    assert [page for page in nav if not (PROJECT_ROOT / "docs" / page).is_file()] == []


def _tutorial_requests(text: str) -> list[tuple[str, int, dict[str, Any], bool]]:
    """(curl line, status, JSON body, whether the body is partial) from the tutorial's block."""
    block = re.search(r"```bash\n(url=http://127\.0\.0\.1:8080/v1/XXXModel\n.*?)```", text, flags=re.DOTALL)
    assert block, "the tutorial's three requests are missing"
    lines = block[1].splitlines()
    requests = []
    for command, comment in zip(lines[1::2], lines[2::2], strict=True):
        status, body = re.fullmatch(r"# (\d{3}) (\{.*\})", comment).groups()  # type: ignore[union-attr]
        partial = body.endswith(", ...}")
        requests.append((command, int(status), json.loads(body.replace(", ...}", "}")), partial))
    return requests


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_tutorial_requests_answer_as_printed(page: str, lazy_gunicorn: ServerProcess) -> None:
    requests = _tutorial_requests((PROJECT_ROOT / page).read_text())

    answers = []
    for command, _status, _body, _partial in requests:
        assert re.fullmatch(r"curl .* --url \$url", command), command  # only the URL is swapped for the server's
        script = f"url={lazy_gunicorn.url}/v1/XXXModel\n{command} --silent --write-out '\\n%{{http_code}}'"
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30)
        body, status = result.stdout.rsplit("\n", 1)
        answers.append((int(status), json.loads(body)))

    assert len(requests) == 3
    for (_command, status, body, partial), (got_status, got_body) in zip(requests, answers, strict=True):
        assert got_status == status
        shown = {key: got_body.get(key) for key in body} if partial else got_body
        assert shown == body
