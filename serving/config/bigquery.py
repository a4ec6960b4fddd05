"""Settings of BigQuery remote functions (`POST /v1/bigquery/<Model>`): who may call, how much at once.

A self-contained group: its fields, their parsers and their one cross-field check
(`check_bigquery`, which `Settings.check` need not know about: it runs from
`__post_init__`, so the group can be composed into `Settings` with one line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from serving.config import parsers
from serving.config.fields import SettingsError, setting

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+")


def _emails(raw: str) -> tuple[str, ...]:
    emails = parsers.parse_csv(raw)
    for email in emails:
        if not _EMAIL.fullmatch(email):
            raise ValueError(f"expected service-account emails separated by commas; {email!r} is not one")
    return tuple(email.lower() for email in emails)


def _audiences(raw: str) -> tuple[str, ...]:
    audiences = parsers.parse_csv(raw)
    for audience in audiences:
        parsers.base_url(audience)
    return audiences


def _optional_rows(raw: str) -> int | None:
    return None if not raw.strip() else parsers.int_between(1, 100_000)(raw)


@dataclass(frozen=True)
class BigQuerySettings:
    """BigQuery remote functions: token checks, the row limit and the per-process call limit."""

    bigquery_invokers: tuple[str, ...] = setting(
        "BIGQUERY_INVOKERS",
        (),
        "Service-account emails (comma-separated) whose Google-signed ID token may call "
        "`POST /v1/bigquery/<Model>`: the BigQuery connections' service accounts. Unset (and "
        "`BIGQUERY_TRUST_FRONT_END` false): the route is off (404).",
        _emails,
    )
    bigquery_audience: tuple[str, ...] = setting(
        "BIGQUERY_AUDIENCE",
        (),
        "Audiences (comma-separated URLs) a BigQuery ID token may name; unset: the service's own URL "
        "(`https://<host>`, as BigQuery sets it to the endpoint's origin).",
        _audiences,
    )
    bigquery_certs_url: str = setting(
        "BIGQUERY_CERTS_URL",
        GOOGLE_CERTS_URL,
        "Where Google's ID-token signing certificates are fetched (cached an hour); change only for tests.",
        parsers.base_url,
    )
    bigquery_trust_front_end: bool = setting(
        "BIGQUERY_TRUST_FRONT_END",
        False,
        "Open `POST /v1/bigquery/<Model>` without checking tokens, because the platform already does "
        "(Cloud Run deployed with `--no-allow-unauthenticated`). Never on a public service.",
        parsers.parse_bool,
    )
    bigquery_max_rows: int | None = setting(
        "BIGQUERY_MAX_ROWS",
        None,
        "Most rows one BigQuery call may carry (400 beyond, naming the `max_batching_rows` to set); "
        "unset: as many as the model's time budget allows in BigQuery's 20 minutes a call "
        "(`max_batch_size` x 1200 s / the model's `TIMEOUT_S`, at most 10000).",
        _optional_rows,
    )
    bigquery_max_in_flight: int = setting(
        "BIGQUERY_MAX_IN_FLIGHT",
        2,
        "BigQuery calls one worker process runs at once; later ones wait for a slot.",
        parsers.int_between(1, 256),
    )
    bigquery_queue_limit: int = setting(
        "BIGQUERY_QUEUE_LIMIT",
        16,
        "BigQuery calls that may wait for a slot in one worker process; beyond it, 429 with "
        "`Retry-After` (BigQuery retries).",
        parsers.int_between(0, 10_000),
    )

    def __post_init__(self) -> None:
        self.check_bigquery()

    def check_bigquery(self) -> None:
        """Refuse trusting the front end and checking tokens at once: say which is meant."""
        if self.bigquery_trust_front_end and self.bigquery_invokers:
            raise SettingsError(
                "BIGQUERY_TRUST_FRONT_END=true is not valid with BIGQUERY_INVOKERS set: either the platform "
                "checks callers (trust it) or this server checks their tokens; unset one"
            )

    @property
    def bigquery_enabled(self) -> bool:
        """True when `POST /v1/bigquery/<Model>` is served."""
        return bool(self.bigquery_invokers) or self.bigquery_trust_front_end
