"""Reading the API keys from Secret Manager.

There is no Secret Manager emulator, so these tests run the real client library against a
small gRPC server on loopback that implements `AccessSecretVersion`. What they cannot
cover: Application Default Credentials and IAM on Google Cloud (the default client in
`access_secret`), which only a deployment exercises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.cloud.secretmanager_v1 import (
    AccessSecretVersionRequest,
    AccessSecretVersionResponse,
    SecretManagerServiceClient,
    SecretPayload,
)
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import SecretManagerServiceGrpcTransport

from serving.config.parsers import secret_name as parse_secret_name
from serving.config.settings import Settings, SettingsError
from serving.security.access import load_key_ring
from serving.security.secretmanager import SecretError, access_secret, crc32c
from tests.servers import free_port

NAME = "projects/demo/secrets/api-keys/versions/3"
KEYS = "# keys for the widget and ops\nwidget:widget-secret-0123456789:XXXModel\nops:ops-secret-0123456789abcd\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("projects/demo/secrets/api-keys", "projects/demo/secrets/api-keys/versions/latest"),
        ("projects/demo/secrets/api-keys/versions/3", "projects/demo/secrets/api-keys/versions/3"),
        (" projects/1234/secrets/k/versions/latest ", "projects/1234/secrets/k/versions/latest"),
    ],
)
def test_secret_names(raw: str, expected: str) -> None:
    assert parse_secret_name(raw) == expected


@pytest.mark.parametrize("raw", ["api-keys", "projects/demo/secrets/", "projects/demo/secrets/k/versions/0"])
def test_bad_secret_names_fail_at_start(raw: str) -> None:
    with pytest.raises(SettingsError, match="API_KEYS_SECRET="):
        Settings.from_env({"API_KEYS_SECRET": raw})


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


Answer = Callable[[AccessSecretVersionRequest, grpc.ServicerContext], AccessSecretVersionResponse]


@pytest.fixture
def fake_secret_manager() -> Iterator[Callable[[Answer], SecretManagerServiceClient]]:
    """A real SecretManagerServiceClient talking to a loopback gRPC server we control."""
    servers: list[grpc.Server] = []

    def start(answer: Answer) -> SecretManagerServiceClient:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            "google.cloud.secretmanager.v1.SecretManagerService",
            {
                "AccessSecretVersion": grpc.unary_unary_rpc_method_handler(
                    answer,
                    request_deserializer=AccessSecretVersionRequest.deserialize,
                    response_serializer=AccessSecretVersionResponse.serialize,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        port = free_port()
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))

    yield start
    for server in servers:
        server.stop(grace=None)


def _payload(name: str, data: bytes, checksum: int | None) -> AccessSecretVersionResponse:
    payload = SecretPayload(data=data) if checksum is None else SecretPayload(data=data, data_crc32c=checksum)
    return AccessSecretVersionResponse(name=name, payload=payload)


def test_reads_the_payload_through_the_real_client(fake_secret_manager: Any) -> None:
    asked: list[str] = []

    def answer(request: AccessSecretVersionRequest, context: grpc.ServicerContext) -> AccessSecretVersionResponse:
        asked.append(request.name)
        return _payload(request.name, KEYS.encode(), crc32c(KEYS.encode()))

    text = access_secret(NAME, client=fake_secret_manager(answer))

    assert text == KEYS
    assert asked == [NAME]


def test_payload_without_checksum_is_accepted(fake_secret_manager: Any) -> None:
    client = fake_secret_manager(lambda request, context: _payload(request.name, b"x", None))

    assert access_secret(NAME, client=client) == "x"


def test_checksum_mismatch_is_refused(fake_secret_manager: Any) -> None:
    client = fake_secret_manager(lambda request, context: _payload(request.name, KEYS.encode(), 12345))

    with pytest.raises(SecretError, match="checksum mismatch"):
        access_secret(NAME, client=client)


def test_permission_denied_names_the_secret(fake_secret_manager: Any) -> None:
    def answer(request: AccessSecretVersionRequest, context: grpc.ServicerContext) -> AccessSecretVersionResponse:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller lacks secretmanager.versions.access")
        raise AssertionError("unreachable")

    with pytest.raises(SecretError, match=f"cannot read secret {NAME}: PermissionDenied"):
        access_secret(NAME, client=fake_secret_manager(answer))


def test_binary_payload_is_refused(fake_secret_manager: Any) -> None:
    client = fake_secret_manager(lambda request, context: _payload(request.name, b"\xff\xfe", crc32c(b"\xff\xfe")))

    with pytest.raises(SecretError, match="not UTF-8"):
        access_secret(NAME, client=client)


def test_key_ring_merges_api_keys_and_the_secret() -> None:
    settings = Settings(api_keys_secret=NAME).replace(
        api_keys=Settings.from_env({"API_KEYS": "local:local-secret-0123456789"}).api_keys
    )
    fetched: list[str] = []

    def fetch(name: str) -> str:
        fetched.append(name)
        return KEYS

    ring = load_key_ring(settings, fetch_secret=fetch)

    assert fetched == [NAME]
    assert [key.id for key in ring.keys] == ["local", "widget", "ops"]
    assert ring.authenticate("widget-secret-0123456789").models == frozenset({"XXXModel"})  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param("widget:short", "not a valid key list: entry 1 ('widget')", id="bad-entry"),
        pytest.param("# nothing yet\n", "holds no keys", id="empty"),
        pytest.param("local:other-secret-0123456789", "key id 'local' is used twice", id="clash-with-API_KEYS"),
    ],
)
def test_bad_secret_payload_stops_start_up(payload: str, message: str) -> None:
    settings = Settings(api_keys_secret=NAME).replace(
        api_keys=Settings.from_env({"API_KEYS": "local:local-secret-0123456789"}).api_keys
    )

    with pytest.raises(SettingsError, match="API_KEYS") as caught:
        load_key_ring(settings, fetch_secret=lambda name: payload)

    assert message in str(caught.value)
    assert "other-secret" not in str(caught.value)


def test_unreachable_secret_manager_stops_start_up() -> None:
    with pytest.raises(SecretError, match="cannot read secret"):
        load_key_ring(
            Settings(api_keys_secret=NAME), fetch_secret=lambda name: access_secret(name, client=_dead(), timeout_s=1.0)
        )


def _dead() -> SecretManagerServiceClient:
    channel = grpc.insecure_channel(f"127.0.0.1:{free_port()}")
    transport = SecretManagerServiceGrpcTransport(channel=channel)
    return SecretManagerServiceClient(transport=transport)
