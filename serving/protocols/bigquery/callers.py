"""Who may call BigQuery's route: the Google-signed ID token BigQuery sends, checked with google-auth.

BigQuery cannot send custom headers, so API keys cannot apply. It sends an OIDC ID token
of its connection's service account as `Authorization: Bearer <token>`. `CallerCheck`
verifies it (serving/security/google_tokens.py: signature, expiry, audience, issuer, a
verified email), then that the email is one of `BIGQUERY_INVOKERS`. The certificates come
from `BIGQUERY_CERTS_URL`.
"""

from __future__ import annotations

from collections.abc import Sequence

from serving.errors import Forbidden, Unauthorized
from serving.security.google_tokens import GoogleCertificates, TokenRejected, bearer_token, verified_claims


class CallerCheck:
    """Accepts a request only with a valid Google ID token of one of `invokers`."""

    def __init__(self, *, invokers: Sequence[str], audiences: Sequence[str], certs_url: str) -> None:
        self.invokers = frozenset(email.lower() for email in invokers)
        self.audiences = tuple(audiences)
        self._certs = GoogleCertificates(certs_url)

    def verify(self, authorization: str | None, *, service_audiences: Sequence[str]) -> str:
        """The caller's email; 401 for a missing or invalid token, 403 for a caller not listed.

        `service_audiences` are the audiences the request itself implies (the service's
        origin and the endpoint's URL), used when `BIGQUERY_AUDIENCE` is unset.
        """
        token = bearer_token(authorization)
        if token is None:
            raise _unauthorized("No ID token: BigQuery sends its connection's token as Authorization: Bearer")
        try:
            claims = verified_claims(token, self._certs, list(self.audiences or service_audiences))
        except TokenRejected as exc:
            raise _unauthorized(str(exc)) from None
        email: str = claims["email"]
        if email.lower() not in self.invokers:
            raise Forbidden(f"{email[:120]} may not call BigQuery remote functions here (BIGQUERY_INVOKERS)")
        return email


def _unauthorized(message: str) -> Unauthorized:
    error = Unauthorized(message)
    error.headers["WWW-Authenticate"] = 'Bearer realm="bigquery"'
    return error
