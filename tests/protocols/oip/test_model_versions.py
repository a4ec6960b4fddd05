"""One version check for TF Serving's `:predict` and the Open Inference Protocol.

Both take the version a URL names in the same two forms: the handler's `VERSION`, and the
served version with its artifacts' digest, as `X-Model-Version` shows it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import FIXTURE_HANDLERS

# One of each: Files has artifacts (so a digest), Plain has none.
URLS = [
    pytest.param("POST", "/v1/models/{model}/versions/{version}:predict", {"instances": [{}]}, id="tfserving-predict"),
    pytest.param("GET", "/v2/models/{model}/versions/{version}", None, id="oip-metadata"),
    pytest.param("GET", "/v2/models/{model}/versions/{version}/ready", None, id="oip-ready"),
]


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app(handlers_dir=FIXTURE_HANDLERS / "artifacts").test_client()


def _served_version(client: FlaskClient) -> str:
    version = client.post("/v1/Files", json={}).headers["X-Model-Version"]
    assert version.startswith("1.0+")
    return version


@pytest.mark.parametrize(("method", "url", "body"), URLS)
@pytest.mark.parametrize("form", ["handler-version", "with-digest"])
def test_both_forms_of_the_served_version_are_accepted(
    client: FlaskClient, method: str, url: str, body: object, form: str
) -> None:
    version = "1.0" if form == "handler-version" else _served_version(client)

    response = client.open(url.format(model="Files", version=version), method=method, json=body)

    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(("method", "url", "body"), URLS)
@pytest.mark.parametrize("version", ["2.0", "1.0+000000000000", "1.0+"])
def test_any_other_version_is_a_404_naming_the_served_one(
    client: FlaskClient, method: str, url: str, body: object, version: str
) -> None:
    _served_version(client)  # loaded, so the digest is known

    response = client.open(url.format(model="Files", version=version), method=method, json=body)

    assert response.status_code == 404
    assert "serves version '1.0'" in response.get_json()["message"]
