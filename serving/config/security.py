"""Security settings (API keys, rate limits) and the start-up checks that guard them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from serving.config import parsers
from serving.config.api_keys import ApiKey, KeyRing, parse_key_specs
from serving.config.fields import SettingsError, setting


@dataclass(frozen=True)
class SecuritySettings:
    api_keys: tuple[ApiKey, ...] = setting(
        "API_KEYS",
        (),
        "API keys, `<id>:<secret>[:<Model>|<Model>]`, separated by commas; when set (or "
        "`API_KEYS_SECRET`), model and job routes require one (see Security).",
        parse_key_specs,
        secret=True,
    )
    api_keys_secret: str | None = setting(
        "API_KEYS_SECRET",
        None,
        "Secret Manager secret holding more API keys in the same format, one per line: "
        "`projects/<p>/secrets/<s>[/versions/<n>]`; read once at start.",
        parsers.secret_name,
    )
    rate_limits: str = setting(
        "RATE_LIMITS",
        "",
        "Per-client limits on model and job routes, e.g. `100/minute;10/second` (client: API key, "
        "else IP); empty: no limit.",
        parsers.rate_limits,
    )
    rate_limit_storage_url: str | None = setting(
        "RATE_LIMIT_STORAGE_URL",
        None,
        "Where rate-limit counters live: `redis://host:6379/0` (shared by all workers and "
        "instances); unset: in memory, per worker process.",
        parsers.storage_url,
        secret=True,
    )
    rate_limit_key_prefix: str = setting(
        "RATE_LIMIT_KEY_PREFIX", "model-serving", "Prefix of the rate-limit keys in Redis."
    )

    def key_ring(self, secret_payload: str | None = None) -> KeyRing:
        """The keys of `API_KEYS` plus those in `secret_payload`, the `API_KEYS_SECRET` secret's text.

        Raises `SettingsError` naming the variable when the payload or the whole set is not valid.
        """
        keys: list[ApiKey] = list(self.api_keys)
        if self.api_keys_secret and secret_payload is not None:
            try:
                from_secret = parse_key_specs(secret_payload)
            except ValueError as exc:
                raise SettingsError(f"API_KEYS_SECRET={self.api_keys_secret!r}: not a valid key list: {exc}") from None
            if not from_secret:
                raise SettingsError(f"API_KEYS_SECRET={self.api_keys_secret!r}: the secret holds no keys")
            keys.extend(from_secret)
        try:
            return KeyRing(keys)
        except ValueError as exc:
            raise SettingsError(f"API_KEYS and API_KEYS_SECRET together are not valid: {exc}") from None


def check_key_scopes(ring: KeyRing, served: Iterable[str]) -> None:
    """Refuse a key scoped to a model that is not served (most likely a typo in its name)."""
    for key_id, model in ring.unknown_models(served):
        raise SettingsError(f"API_KEYS: key {key_id!r} is scoped to {model!r}, which is not a served model")
