"""The API_KEYS format and constant-time key lookup."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from serving.config import api_keys as keyspec
from serving.config.api_keys import ApiKey, KeyRing, parse_key_specs, secret_digest
from serving.config.settings import Settings, SettingsError

SECRET_A = "a" * 20
SECRET_B = "B-b.b_b~b+b/b=" + "b" * 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param(f"alice:{SECRET_A}", [("alice", None)], id="all-models"),
        pytest.param(f"alice:{SECRET_A}:*", [("alice", None)], id="star-scope"),
        pytest.param(f"alice:{SECRET_A}:Iris|Digits", [("alice", {"Iris", "Digits"})], id="scoped"),
        pytest.param(
            f" alice:{SECRET_A} , bob:{SECRET_B}:Iris ", [("alice", None), ("bob", {"Iris"})], id="comma-list"
        ),
        pytest.param(
            f"# production keys\nalice:{SECRET_A}\n\nbob:{SECRET_B}:Iris  # the widget\n",
            [("alice", None), ("bob", {"Iris"})],
            id="secret-payload-lines-and-comments",
        ),
        pytest.param("ops:sha256=" + "ab" * 32, [("ops", None)], id="hashed-secret"),
    ],
)
def test_valid_specs(raw: str, expected: list[tuple[str, set[str] | None]]) -> None:
    keys = parse_key_specs(raw)

    assert [(key.id, set(key.models) if key.models is not None else None) for key in keys] == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param("a-bare-secret-0123456789", "entry 1: expected <id>:<secret>", id="no-id"),
        pytest.param(f"alice:{SECRET_A}:Iris:extra", "expected <id>:<secret>", id="too-many-parts"),
        pytest.param(f"al ice:{SECRET_A}", "the id must be", id="bad-id"),
        pytest.param("alice:short", "entry 1 ('alice'): the secret must be 16-512", id="short-secret"),
        pytest.param("alice:" + "x" * 15 + "!", "the secret must be", id="bad-character"),
        pytest.param("alice:sha256=abc", "the secret must be", id="bad-hash"),
        pytest.param(f"alice:{SECRET_A}:Iris|../etc", "'../etc' is not a model name", id="bad-model"),
        pytest.param(f"alice:{SECRET_A},alice:{SECRET_B}", "key id 'alice' is used twice", id="duplicate-id"),
        pytest.param(f"alice:{SECRET_A},bob:{SECRET_A}", "have the same secret", id="duplicate-secret"),
    ],
)
def test_invalid_specs_name_the_entry_never_the_secret(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^entry \d|^key|^keys") as caught:
        parse_key_specs(raw)

    assert message in str(caught.value)
    for secret in (SECRET_A, SECRET_B, "x" * 15, "a-bare-secret"):
        assert secret not in str(caught.value)


def test_settings_error_redacts_the_value() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"API_KEYS": "alice:tooshort-but-secret!"})

    assert "API_KEYS=<redacted> is not valid" in str(caught.value)
    assert "tooshort" not in str(caught.value)


def test_settings_repr_hides_keys() -> None:
    settings = Settings.from_env({"API_KEYS": f"alice:{SECRET_A}", "RATE_LIMIT_STORAGE_URL": "redis://:pw@h:1/0"})

    assert SECRET_A not in repr(settings)
    assert "pw@" not in repr(settings)
    assert settings.api_keys[0].id == "alice"


def test_authenticate_finds_the_matching_key() -> None:
    ring = KeyRing(parse_key_specs(f"alice:{SECRET_A},bob:{SECRET_B}"))

    assert ring.authenticate(SECRET_A).id == "alice"  # type: ignore[union-attr]
    assert ring.authenticate(SECRET_B).id == "bob"  # type: ignore[union-attr]
    assert ring.authenticate(SECRET_A + "x") is None
    assert ring.authenticate("") is None


def test_hashed_secret_accepts_the_secret_it_hashes() -> None:
    digest = hashlib.sha256(SECRET_A.encode()).hexdigest()
    ring = KeyRing(parse_key_specs(f"ops:sha256={digest}"))

    assert ring.authenticate(SECRET_A) is not None
    assert ring.authenticate(f"sha256={digest}") is None  # the hash itself is not a key


def test_every_key_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(ApiKey(f"k{i}", secret_digest(f"secret-number-{i:04d}")) for i in range(5))
    compared: list[Any] = []
    real = keyspec.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(keyspec.hmac, "compare_digest", counting)

    found = ring.authenticate("secret-number-0000")

    assert found is not None
    assert found.id == "k0"
    assert len(compared) == 5


def test_scope() -> None:
    scoped = ApiKey("w", secret_digest(SECRET_A), frozenset({"Iris"}))
    everything = ApiKey("o", secret_digest(SECRET_B))

    assert scoped.may_use("Iris")
    assert not scoped.may_use("Digits")
    assert everything.may_use("Digits")
    assert KeyRing([scoped]).unknown_models(["Digits"]) == [("w", "Iris")]


def test_fingerprint_is_short_and_not_the_digest() -> None:
    key = ApiKey("w", secret_digest(SECRET_A))

    assert len(key.fingerprint) == 12
    assert key.fingerprint not in secret_digest(SECRET_A).hex()
    assert SECRET_A not in repr(key)
