"""docs/security.md's request limits table states the limits the code enforces, with their settings.

Issue 22 asked for the body read deadline, the pixels per request and the tensor shape
bounds to be documented with their settings; this keeps the stated values from drifting.
"""

from __future__ import annotations

import re

import pytest

from serving.config.settings import PROJECT_ROOT, Settings
from serving.protocols.oip.wire import MAX_DIMENSION, MAX_SHAPE_RANK


def _limits_table() -> dict[str, tuple[str, str]]:
    """Each row of the "Request limits" table: what -> (limit, setting)."""
    page = (PROJECT_ROOT / "docs" / "security.md").read_text()
    section = page.split("## Request limits", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("What", "---"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


TIMES, MINUS = "\N{MULTIPLICATION SIGN}", "\N{MINUS SIGN}"
UNITS = {"MiB": 2**20, "s": 1, "dimensions": 1}


def _number(text: str) -> int:
    """The value a limit cell states: `60 s`, `4 x 4096 x 4096`, `2^31 - 1`, `30 MiB` (as typeset)."""
    match = re.match(rf"([0-9^{TIMES}{MINUS} ]+)(MiB|s|dimensions)?\b", text)
    assert match is not None, text
    expression, unit = match.group(1), match.group(2)

    def product(term: str) -> int:
        value = 1
        for factor in term.split(TIMES):
            base, _, power = factor.strip().partition("^")
            value *= int(base) ** int(power or 1)
        return value

    first, *rest = expression.split(MINUS)
    return (product(first) - sum(product(term) for term in rest)) * UNITS.get(unit or "", 1)


SETTINGS = Settings()


@pytest.mark.parametrize(
    ("what", "setting", "value"),
    [
        ("Time for the whole body to arrive", "`BODY_READ_TIMEOUT_S`", SETTINGS.body_read_timeout_s),
        (
            "Decoded image pixels per request, over all its images",
            "`MAX_PIXELS_PER_REQUEST`",
            SETTINGS.max_pixels_per_request,
        ),
        ("v2 tensor rank", "`MAX_SHAPE_RANK`", MAX_SHAPE_RANK),
        ("v2 tensor dimension", "`MAX_DIMENSION`", MAX_DIMENSION),
        ("Body size", "`MAX_REQUEST_BYTES`", SETTINGS.max_request_bytes),
        ("Rows per request (`:predict`, embeddings, v2)", "`PREDICT_MAX_INSTANCES`", SETTINGS.predict_max_instances),
        ("Model time per request", "`PREDICT_TIMEOUT_S`", SETTINGS.predict_timeout_s),
    ],
)
def test_the_limits_table_states_each_limit_with_its_setting(what: str, setting: str, value: float) -> None:
    rows = _limits_table()

    assert what in rows, sorted(rows)
    limit, named = rows[what]
    assert setting in named
    # "Model time per request" starts with the handler's TIMEOUT_S; its default follows "else".
    stated = limit.split("else", 1)[-1].strip()
    assert _number(stated) == value, f"docs/security.md says {limit!r} for {what}, the code {value}"
