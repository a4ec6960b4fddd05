"""Parsers of single environment values: each returns the value or raises `ValueError`.

`Settings.from_env()` turns a `ValueError` into a `SettingsError` naming the variable, so
the messages here say only what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from limits import parse_many

from serving.config.fields import PROJECT_ROOT

# `projects/<project>/secrets/<secret>` (latest version) or `.../versions/<version>`.
SECRET_NAME = re.compile(r"^projects/[^/\s]+/secrets/[A-Za-z0-9_-]{1,255}(/versions/([1-9][0-9]*|latest))?$")


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}")
        return value

    return parse


def float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw.strip())
        if not low <= value <= high:  # also rejects NaN
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("expected a path")
    parsed = Path(raw.strip())
    return parsed if parsed.is_absolute() else PROJECT_ROOT / parsed


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def rate_limits(raw: str) -> str:
    value = raw.strip()
    if value:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError("expected limits such as `100/minute;10/second` (separated by `;`)") from None
    return value


def storage_url(raw: str) -> str | None:
    value = raw.strip()
    if value and not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise ValueError("expected memory://, redis://host:port[/db] or rediss://...")
    return value or None


def collection_name(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", value):
        raise ValueError("expected letters, digits, '_' or '-' (at most 100)")
    return value


def tasks_queue(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"projects/[^/\s]+/locations/[^/\s]+/queues/[A-Za-z0-9-]{1,100}", value):
        raise ValueError("expected projects/PROJECT/locations/LOCATION/queues/QUEUE")
    return value


def base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
        raise ValueError("expected an http(s) URL without query or fragment")
    return value


def proxy_hops(raw: str) -> int | None:
    value = raw.strip().lower()
    if value in {"", "auto"}:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 5:
        raise ValueError("expected auto or an integer from 0 to 5")
    return int(value)


def sample_rate_or_auto(raw: str) -> float | None:
    value = raw.strip().lower()
    if value in {"", "auto"}:
        return None
    try:
        return float_between(0, 1)(value)
    except ValueError:
        raise ValueError("expected auto or a number from 0 to 1") from None


def optional(raw: str) -> str | None:
    # Set but empty reads as unset, as Google's own client libraries read these variables.
    return raw.strip() or None


def project_id(raw: str) -> str | None:
    value = optional(raw)
    # Project ids, including domain-scoped ones (`example.com:my-project`).
    if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.:-]{0,99}", value):
        raise ValueError("expected a Google Cloud project id (lowercase letters, digits, hyphens)")
    return value


def route(raw: str) -> str:
    value = raw.strip()
    # Werkzeug reads `<...>` in a rule as a URL variable; Vertex AI's routes are plain paths.
    if not value.startswith("/") or any(ch in value for ch in "<>?# \t"):
        raise ValueError("expected a URL path starting with '/' (no '<', '>', '?', '#' or spaces)")
    return value


def model_name(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("expected a model name")
    return value


def secret_name(raw: str) -> str:
    """A full Secret Manager version name; `projects/P/secrets/S` means its latest version."""
    name = raw.strip()
    if not SECRET_NAME.match(name):
        raise ValueError("expected projects/<project>/secrets/<secret>[/versions/<n>|latest]")
    return name if "/versions/" in name else name + "/versions/latest"
