"""Reading a secret from Google Secret Manager (the API keys, when `API_KEYS_SECRET` is set).

`access_secret()` is the whole Secret Manager integration: one `AccessSecretVersion` call
with the service's default credentials, and a CRC32C check of the payload, as Google
recommends. It runs once, when the app is built; rotating keys means adding a new secret
version and restarting (a new App Engine version or Cloud Run revision).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient


class SecretError(RuntimeError):
    """The secret could not be read or is corrupt; the message names the secret."""


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`: the checksum Secret Manager sends with a payload."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def access_secret(name: str, client: SecretManagerServiceClient | None = None, timeout_s: float = 30.0) -> str:
    """The UTF-8 payload of secret version `name`; raises `SecretError` saying what failed.

    `client` defaults to one using Application Default Credentials (on App Engine and
    Cloud Run: the service account, which needs `roles/secretmanager.secretAccessor`).
    Transient failures are retried by the client library until `timeout_s` has passed.
    """
    try:
        from google.api_core import exceptions, retry

        if client is None:
            from google.cloud.secretmanager_v1 import SecretManagerServiceClient

            client = SecretManagerServiceClient()
        transient = retry.if_exception_type(exceptions.ServiceUnavailable, exceptions.ResourceExhausted)
        response = client.access_secret_version(
            request={"name": name}, retry=retry.Retry(predicate=transient, timeout=timeout_s), timeout=timeout_s
        )
    except Exception as exc:  # noqa: BLE001 - any transport or permission failure stops start-up, named
        raise SecretError(f"cannot read secret {name}: {exc.__class__.__name__}: {exc}") from None
    data = bytes(response.payload.data)
    # proto3 optional: absent on very old secret versions, so check only when present.
    if "data_crc32c" in response.payload and response.payload.data_crc32c != crc32c(data):
        raise SecretError(f"secret {name}: payload checksum mismatch (corrupted in transit)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"secret {name}: payload is not UTF-8 text") from None
