"""Who may call BigQuery's route: the Google-signed ID token BigQuery sends, checked with google-auth.

BigQuery cannot send custom headers, so API keys cannot apply. It sends an OIDC ID token
of its connection's service account as `Authorization: Bearer <token>`. `CallerCheck`
verifies it with `google.auth.jwt.decode` (RS256 signature against Google's published
certificates, expiry with 10 s of clock skew, audience), then that Google issued it and
that its verified email is one of `BIGQUERY_INVOKERS`.

The certificates are fetched from `BIGQUERY_CERTS_URL` and kept an hour (Google rotates
them over days), or refetched at most once a minute when a token names an unknown key
id: google-auth's own `id_token.verify_token` fetches them on every call, which would
put a request to Google in front of every BigQuery batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from serving.errors import Forbidden, Unauthorized

_GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_CLOCK_SKEW_S = 10


class CertificateCache:
    """Google's ID-token signing certificates (kid -> PEM), fetched once an hour or on an unknown kid."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._certs: dict[str, str] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def get(self, kid: str) -> dict[str, str]:
        """The certificates; refetched when stale or when `kid` is not among them."""
        with self._lock:
            age = time.monotonic() - self._fetched_at
            # An unknown kid refetches at most once a minute, so forged tokens cannot
            # turn into a flood of requests to Google.
            if not self._certs or age > 3600 or (kid not in self._certs and age > 60):
                response = requests.get(self._url, timeout=10)
                response.raise_for_status()
                certs = response.json()
                if not isinstance(certs, dict):
                    raise ValueError("the certificate endpoint did not return an object")
                self._certs = {str(k): str(v) for k, v in certs.items()}
                self._fetched_at = time.monotonic()
            return dict(self._certs)


class CallerCheck:
    """Accepts a request only with a valid Google ID token of one of `invokers`."""

    def __init__(self, *, invokers: Sequence[str], audiences: Sequence[str], certs_url: str) -> None:
        self.invokers = frozenset(email.lower() for email in invokers)
        self.audiences = tuple(audiences)
        self._certs = CertificateCache(certs_url)

    def verify(self, authorization: str | None, *, service_audiences: Sequence[str]) -> str:
        """The caller's email; 401 for a missing or invalid token, 403 for a caller not listed.

        `service_audiences` are the audiences the request itself implies (the service's
        origin and the endpoint's URL), used when `BIGQUERY_AUDIENCE` is unset.
        """
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("No ID token: BigQuery sends its connection's token as Authorization: Bearer")
        audiences = list(self.audiences or service_audiences)
        try:
            header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
            certs = self._certs.get(str(header.get("kid", "")))
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=audiences, clock_skew_in_seconds=_CLOCK_SKEW_S
            )
        except (requests.RequestException, OSError) as exc:
            raise _unauthorized(f"Google's token certificates could not be fetched: {type(exc).__name__}") from None
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise _unauthorized(f"ID token rejected: {str(exc)[:200]}") from None
        if claims.get("iss") not in _GOOGLE_ISSUERS:
            raise _unauthorized("ID token rejected: not issued by Google")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise _unauthorized("ID token rejected: it carries no verified email")
        if email.lower() not in self.invokers:
            raise Forbidden(f"{email[:120]} may not call BigQuery remote functions here (BIGQUERY_INVOKERS)")
        return email


def _unauthorized(message: str) -> Unauthorized:
    error = Unauthorized(message)
    error.headers["WWW-Authenticate"] = 'Bearer realm="bigquery"'
    return error
