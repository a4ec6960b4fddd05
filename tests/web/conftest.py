"""Browser fixtures: one headless Debian Chromium per session, a fresh page per test.

The browser is Debian's `chromium` package (`.ci/run` installs it when missing), driven
by the pinned Python `playwright`; Playwright's own browser download is never used.
Without /usr/bin/chromium the browser tests skip with that reason (fail in CI).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browsers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium

# Long enough for a loaded 2-core CI machine; a passing step takes milliseconds.
EXPECT_TIMEOUT_MS = 15_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium, shared by every browser test of the session."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions a page reported."""

    console: list[str] = field(default_factory=list)
    uncaught: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.console + self.uncaught


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Any, page_errors: PageErrors) -> Iterator[Any]:
    """A new page in its own browser context (no shared cache, cookies or storage)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    new_page = context.new_page()
    new_page.on("console", lambda message: message.type == "error" and page_errors.console.append(message.text))
    new_page.on("pageerror", lambda error: page_errors.uncaught.append(str(error)))
    try:
        yield new_page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ in the project (gitignored): screenshots for people to review."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
