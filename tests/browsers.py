"""Debian's Chromium, as every browser test starts it (`.ci/run` installs it when missing).

Playwright's own browser download is never used: the Playwright fixtures launch
`CHROMIUM` with `CHROMIUM_ARGS`, and tests that only need a rendered page run it
headless from the command line with the same flags.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import require_service
from tests.servers import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# These keep Chromium off the network (it would otherwise call Google's hosts, which this
# machine's closed network refuses) and working as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots the browser tests leave for people to look at.
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


def require_chromium() -> None:
    """Skip (fail under MODEL_SERVING_REQUIRE_SERVICES) when Chromium is not installed."""
    require_service(
        CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK),
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
    )
