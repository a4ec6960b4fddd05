"""`PROTOCOLS`: each wire protocol is one package, and the app, the OpenAPI document and
the handler check all take their protocols from that one tuple."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient

from serving.openapi.document import ROUTE_GROUPS
from serving.protocols import PROTOCOLS, reserved_names
from serving.protocols.spec import WireProtocol
from serving.runtime.handlers import HandlerError
from tests.conftest import FIXTURE_HANDLERS


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=[protocol.name for protocol in PROTOCOLS])
def test_each_protocol_is_described_by_its_own_package(protocol: WireProtocol) -> None:
    assert protocol.blueprint.import_name.startswith(f"serving.protocols.{protocol.name}.")
    assert protocol.blueprint.name == protocol.name


def test_the_app_serves_every_protocol_and_the_document_describes_them(make_app: Callable[..., Flask]) -> None:
    app = make_app(handlers_dir=FIXTURE_HANDLERS / "protocols")

    assert {protocol.name for protocol in PROTOCOLS} <= set(app.blueprints)
    assert [group for group in ROUTE_GROUPS[: len(PROTOCOLS)]] == [protocol.openapi for protocol in PROTOCOLS]


def test_reserved_names_are_every_protocols_in_lower_case() -> None:
    extra = WireProtocol("extra", Blueprint("extra", __name__), reserved_names=frozenset({"BigThing"}))

    assert reserved_names() == {"models", "jobs", "embeddings", "bigquery"}
    assert reserved_names((*PROTOCOLS, extra)) == {"models", "jobs", "embeddings", "bigquery", "bigthing"}


@pytest.mark.parametrize("name", ["Embeddings", "models", "JOBS", "BigQuery"])
def test_a_handler_named_like_a_protocols_url_stops_start_up(
    make_app: Callable[..., Flask], tmp_path: Path, name: str
) -> None:
    (tmp_path / "clash.py").write_text(
        f"NAME = {name!r}\nINPUT_SCHEMA = {{}}\ndef predict(model, payload):\n    return 1\n"
    )

    with pytest.raises(HandlerError, match=f"clash.py: expected a NAME other than .*found '{name}'"):
        make_app(handlers_dir=tmp_path)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/v1/models", 200, id="listing"),
        pytest.param("/v1/models/embeddings", 404, id="not-a-model-called-embeddings"),
        pytest.param("/v1/models/Jobs", 404, id="not-a-model-called-jobs"),
        pytest.param("/v1/models/bigquery", 404, id="not-a-model-called-bigquery"),
    ],
)
def test_no_model_route_takes_a_reserved_name(fixture_client: FlaskClient, path: str, status: int) -> None:
    assert fixture_client.get(path).status_code == status
