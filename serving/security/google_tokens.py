"""Google-signed OIDC ID tokens, checked with google-auth: Cloud Tasks' pushes and BigQuery's calls.

Both callers send `Authorization: Bearer <ID token>` of a service account. `verified_claims`
checks it with `google.auth.jwt.decode` (RS256 signature against Google's published
certificates, expiry with 10 s of clock skew, audience), then that Google issued it and
that it carries a verified email; what that email may do is the caller's rule.

`GoogleCertificates` keeps the certificates an hour (Google rotates them over days) and
refetches at most once a minute when a token names an unknown key id. It is hand-written
because google-auth's own `id_token.verify_token` fetches them on every call, which would
put a request to Google in front of every task and every BigQuery batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_S = 10


class TokenRejected(Exception):
    """The token is not a valid Google ID token with a verified email; the message says why."""


class GoogleCertificates:
    """Google's ID-token signing certificates (kid -> PEM) from `url`, cached as the module says."""

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


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def verified_claims(token: str, certificates: GoogleCertificates, audience: str | Sequence[str]) -> dict[str, Any]:
    """The claims of a Google-issued ID token for `audience` with a verified `email`; else `TokenRejected`."""
    try:
        header = jwt.decode_header(token)  # type: ignore[no-untyped-call]
        certs = certificates.get(str(header.get("kid", "")))
        claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token,
            certs=certs,
            audience=audience if isinstance(audience, str) else list(audience),
            clock_skew_in_seconds=CLOCK_SKEW_S,
        )
    except (requests.RequestException, OSError) as exc:
        raise TokenRejected(f"Google's token certificates could not be fetched: {type(exc).__name__}") from None
    except (ValueError, auth_exceptions.GoogleAuthError) as exc:
        raise TokenRejected(f"ID token rejected: {str(exc)[:200]}") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise TokenRejected("ID token rejected: not issued by Google")
    if not isinstance(claims.get("email"), str) or claims.get("email_verified") is not True:
        raise TokenRejected("ID token rejected: it carries no verified email")
    return claims
