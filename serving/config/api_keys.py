"""API keys: the `API_KEYS` format, parsed once, and constant-time lookup of a presented key.

One key per entry; entries are separated by commas or newlines (a Secret Manager payload
can hold one per line, with `#` comments and blank lines):

    <id>:<secret>[:<Model>|<Model>...]

- `id`: a public name for the key (letters, digits, `_ . -`, at most 64). It is what the
  logs, `current_key_id()` (serving/security/access.py) and job ownership use; the secret
  is never logged.
- `secret`: what clients send, at least 16 characters of `A-Z a-z 0-9 - . _ ~ + / =`
  (RFC 6750's token characters; `python -c "import secrets; print(secrets.token_urlsafe(32))"`
  makes a good one), or `sha256=<64 hex digits>`: the SHA-256 of the secret, so the
  configuration itself holds nothing a client could send.
- the optional scope: the models this key may call, separated by `|`; `*` or nothing
  means every model.

This module has no Flask imports: `Settings` parses `API_KEYS` with `parse_key_specs`, and
serving/security/access.py uses the `KeyRing` on each request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{16,512}$")
_HASHED = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_MODEL = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def secret_digest(secret: str) -> bytes:
    """The SHA-256 of a presented or configured secret, as compared by `KeyRing`."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its public id, the digest of its secret, and its model scope."""

    id: str
    digest: bytes = field(repr=False)
    # None: every model; otherwise the names of the models this key may call.
    models: frozenset[str] | None = None

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible tag of the secret (to tell rotated secrets apart in logs)."""
        return hashlib.sha256(self.digest).hexdigest()[:12]

    def may_use(self, model: str) -> bool:
        """True when this key is allowed to call `model`."""
        return self.models is None or model in self.models


def _entries(raw: str) -> Iterator[str]:
    for line in raw.splitlines():
        content = line.split("#", 1)[0]
        for part in content.split(","):
            if part.strip():
                yield part.strip()


def parse_key_specs(raw: str) -> tuple[ApiKey, ...]:
    """Parse the `API_KEYS` format; raises `ValueError` naming the entry, never the secret."""
    keys: list[ApiKey] = []
    for position, entry in enumerate(_entries(raw), start=1):
        parts = entry.split(":")
        key_id = parts[0]
        # Name the entry by its id only when it has one: a lone word may be a bare secret.
        where = f"entry {position} ({key_id!r})" if len(parts) > 1 and _ID.match(key_id) else f"entry {position}"
        if len(parts) not in (2, 3):
            raise ValueError(f"{where}: expected <id>:<secret>[:<Model>|<Model>...]")
        if not _ID.match(key_id):
            raise ValueError(f"{where}: the id must be 1-64 letters, digits, '_', '.' or '-'")
        secret = parts[1]
        hashed = _HASHED.match(secret)
        if hashed:
            digest = bytes.fromhex(hashed.group(1))
        elif _SECRET.match(secret):
            digest = secret_digest(secret)
        else:
            raise ValueError(
                f"{where}: the secret must be 16-512 characters of A-Z a-z 0-9 - . _ ~ + / = "
                "(or sha256=<64 hex digits>)"
            )
        models: frozenset[str] | None = None
        scope = parts[2].strip() if len(parts) == 3 else ""
        if scope and scope != "*":
            names = [name.strip() for name in scope.split("|")]
            bad = [name for name in names if not _MODEL.match(name)]
            if bad:
                raise ValueError(f"{where}: {bad[0]!r} is not a model name")
            models = frozenset(names)
        keys.append(ApiKey(key_id, digest, models))
    check_unique(keys)
    return tuple(keys)


def check_unique(keys: Iterable[ApiKey]) -> None:
    """Raise `ValueError` when two keys share an id or a secret."""
    ids: set[str] = set()
    digests: dict[bytes, str] = {}
    for key in keys:
        if key.id in ids:
            raise ValueError(f"key id {key.id!r} is used twice")
        if key.digest in digests:
            raise ValueError(f"keys {digests[key.digest]!r} and {key.id!r} have the same secret")
        ids.add(key.id)
        digests[key.digest] = key.id


class KeyRing:
    """Every accepted key; finds the one a client presented in constant time."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = tuple(keys)
        check_unique(self.keys)

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (then model routes require one)."""
        return bool(self.keys)

    def authenticate(self, presented: str) -> ApiKey | None:
        """The key whose secret is `presented`, or None.

        Compares the presented secret's digest with every key's digest using
        `hmac.compare_digest` and never stops early, so the time taken says nothing about
        which key, or how much of one, matched.
        """
        digest = secret_digest(presented)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key
        return found

    def unknown_models(self, served: Iterable[str]) -> list[tuple[str, str]]:
        """`(key id, model)` pairs where a key's scope names a model that is not served."""
        names = set(served)
        return [(key.id, model) for key in self.keys for model in sorted(key.models or ()) if model not in names]
