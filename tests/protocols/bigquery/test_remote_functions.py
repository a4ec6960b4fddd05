"""BigQuery remote functions (`POST /v1/bigquery/<Model>`) through Flask's test client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.config.api_keys import parse_key_specs
from serving.config.settings import Settings, SettingsError
from serving.errors import TooManyRequests, ValidationFailed
from serving.protocols import PROTOCOLS, reserved_names
from serving.protocols.bigquery import PROTOCOL
from serving.protocols.bigquery.routes import CallGate, error_body, max_rows
from tests.conftest import FIXTURE_HANDLERS
from tests.jobs.oidc import SERVICE_ACCOUNT, CertificateServer, Issuer

HANDLERS = FIXTURE_HANDLERS / "bigquery"
URL = "/v1/bigquery/Typed"
ROW = {"count": 2, "amount": 1.5, "label": "a"}


def remote_call(*calls: list[Any], **context: str) -> dict[str, Any]:
    """A request body as BigQuery sends it."""
    return {
        "requestId": "124ab1c",
        "caller": "//bigquery.googleapis.com/projects/p/jobs/p:US.bquxjob_5b4c112c_17961fafeaf",
        "sessionUser": "someone@example.com",
        "userDefinedContext": context,
        "calls": list(calls),
    }


@pytest.fixture
def bq_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(handlers_dir=HANDLERS, bigquery_trust_front_end=True)


@pytest.fixture
def bq(bq_app: Flask) -> FlaskClient:
    return bq_app.test_client()


def _only_error_message(response: Any) -> str:
    assert set(response.json) == {"errorMessage"}, response.json
    message: str = response.json["errorMessage"]
    assert len(message.encode()) < 1024
    return message


# --- arguments ---


@pytest.mark.parametrize(
    ("call", "echo"),
    [
        pytest.param([ROW], ROW, id="one-json-object"),
        pytest.param([2, 1.5, "a", None, None, None], ROW, id="positional-nulls-are-absent"),
        pytest.param(
            ["9007199254740993", "2.25", "b", "aGk=", "2024-01-02", None],
            {"count": 9007199254740993, "amount": 2.25, "label": "b", "data": "aGk=", "day": "2024-01-02"},
            id="int64-and-numeric-as-strings-bytes-as-base64",
        ),
        pytest.param(
            [{"count": "7", "amount": "1e2", "label": "c", "note": None}],
            {"count": 7, "amount": 100.0, "label": "c"},
            id="json-object-with-string-numbers-and-null",
        ),
    ],
)
def test_each_argument_style_becomes_the_models_payload(bq: FlaskClient, call: list[Any], echo: dict[str, Any]) -> None:
    response = bq.post(URL, json=remote_call(call))

    assert response.status_code == 200
    assert set(response.json) == {"replies"}
    assert response.json["replies"][0]["echo"] == echo


def test_a_wrong_number_of_scalars_names_the_order_to_give(bq: FlaskClient) -> None:
    response = bq.post(URL, json=remote_call([2, 1.5, "a"]))

    assert response.status_code == 400
    message = _only_error_message(response)
    assert message.startswith("row 0: 3 values given, but the model takes 6")
    assert "count, amount, label, data, day, note" in message


def test_rate_limits_leave_the_route_to_its_own_gate(make_app: Callable[..., Flask]) -> None:
    client = make_app(handlers_dir=HANDLERS, bigquery_trust_front_end=True, rate_limits="1/minute").test_client()

    statuses = [client.post(URL, json=remote_call([ROW])).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]  # one client (BigQuery) is all there is: CallGate bounds it


def test_replies_are_one_per_call_in_order_and_run_in_batches(bq_app: Flask, bq: FlaskClient) -> None:
    calls: list[int] = bq_app.extensions["serving"].registry.get("Typed").spec.predict_batch.__globals__["CALLS"]
    calls.clear()
    rows = [[{"count": i, "amount": 0.5, "label": f"r{i}"}] for i in range(10)]

    response = bq.post(URL, json=remote_call(*rows))

    assert [reply["label"] for reply in response.json["replies"]] == [f"r{i}" for i in range(10)]
    assert calls == [4, 4, 2]  # max_batch_size 4: predict_batch calls, not one predict per row


def test_a_null_argument_replies_null_without_a_model_call(bq: FlaskClient) -> None:
    response = bq.post(URL, json=remote_call([ROW], [None]))

    assert response.json["replies"][1] is None


def test_output_picks_one_field_of_the_result(bq: FlaskClient) -> None:
    response = bq.post(URL, json=remote_call([ROW], [{**ROW, "label": "b"}], output="label"))

    assert response.json == {"replies": ["a", "b"]}


def test_output_naming_no_field_is_a_400_listing_the_fields(bq: FlaskClient) -> None:
    response = bq.post(URL, json=remote_call([ROW], output="nope"))

    assert response.status_code == 400
    assert "'nope'" in _only_error_message(response)
    assert "total, label" in response.json["errorMessage"]


def test_positional_values_for_a_schema_without_flat_order_are_refused(bq: FlaskClient) -> None:
    response = bq.post("/v1/bigquery/Nested", json=remote_call([1, 2]))

    assert response.status_code == 400
    assert "takes no positional values" in _only_error_message(response)


# --- bad rows ---


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        pytest.param({**ROW, "count": "many"}, "field count", id="schema"),
        pytest.param({**ROW, "label": "reject"}, "refuses", id="model-refuses"),
        pytest.param({"amount": 1}, "'count' is a required property", id="missing"),
    ],
)
def test_on_error_fail_is_a_400_naming_the_row_and_the_field(bq: FlaskClient, bad: dict[str, Any], field: str) -> None:
    response = bq.post(URL, json=remote_call([ROW], [bad]))

    assert response.status_code == 400
    message = _only_error_message(response)
    assert message.startswith("row 1")
    assert field in message


def test_on_error_null_replies_null_for_bad_rows_and_counts_them(make_app: Callable[..., Flask]) -> None:
    app = make_app(handlers_dir=HANDLERS, bigquery_trust_front_end=True, metrics=True)
    client = app.test_client()

    response = client.post(
        URL, json=remote_call([ROW], [{**ROW, "count": "x"}], [{**ROW, "label": "reject"}], [ROW], on_error="null")
    )

    assert response.status_code == 200
    replies = response.json["replies"]
    assert [reply and reply["label"] for reply in replies] == ["a", None, None, "a"]
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'model_serving_rows_total{model="Typed",outcome="null",route="/v1/bigquery/<name>"} 2.0' in exposition


def test_a_crash_is_a_500_naming_the_request_id_even_with_on_error_null(bq: FlaskClient) -> None:
    response = bq.post(URL, json=remote_call([{**ROW, "label": "crash"}], on_error="null"))

    assert response.status_code == 500
    assert "request id" in _only_error_message(response)


# --- the request itself ---


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"requestId": "x"}, '"calls" must be an array', id="no-calls"),
        pytest.param([1], "JSON object", id="not-an-object"),
        pytest.param(remote_call([ROW], on_error="skip"), "'fail' or 'null'", id="bad-on-error"),
        pytest.param(remote_call([ROW], colour="red"), "unknown key 'colour'", id="unknown-context-key"),
        pytest.param(remote_call("row"), "must be a non-empty array", id="row-not-a-list"),
        pytest.param(remote_call([]), "must be a non-empty array", id="empty-row"),
    ],
)
def test_malformed_requests_are_400s_with_only_an_error_message(bq: FlaskClient, body: Any, expected: str) -> None:
    response = bq.post(URL, json=body)

    assert response.status_code == 400
    assert expected in _only_error_message(response)


def test_more_rows_than_the_limit_name_the_max_batching_rows_to_set(make_app: Callable[..., Flask]) -> None:
    client = make_app(handlers_dir=HANDLERS, bigquery_trust_front_end=True, bigquery_max_rows=3).test_client()

    response = client.post(URL, json=remote_call(*[[ROW]] * 4))

    assert response.status_code == 400
    assert "max_batching_rows = 3" in _only_error_message(response)


def test_the_default_row_limit_follows_the_time_budget(bq_app: Flask) -> None:
    state = bq_app.extensions["serving"]
    typed = state.registry.get("Typed")
    slow = state.registry.get("Slow")

    # 4 rows a chunk x (1200 s / 30 s default budget); Slow: 32 x (1200 / 10).
    assert max_rows(state.settings, typed, 30.0) == 160
    assert max_rows(state.settings, slow, 30.0) == 3840


def test_the_route_is_off_without_invokers_or_trust(make_app: Callable[..., Flask]) -> None:
    response = make_app(handlers_dir=HANDLERS).test_client().post(URL, json=remote_call([ROW]))

    assert response.status_code == 404
    assert "BIGQUERY_INVOKERS" in _only_error_message(response)


def test_unknown_models_are_404s_in_bigquerys_shape(bq: FlaskClient) -> None:
    response = bq.post("/v1/bigquery/Nope", json=remote_call([ROW]))

    assert response.status_code == 404
    assert "Nope" in _only_error_message(response)


def test_the_route_needs_no_api_key_even_when_keys_are_required(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        handlers_dir=HANDLERS, bigquery_trust_front_end=True, api_keys=parse_key_specs("k1:s3cret-s3cret-s3cret")
    )

    assert app.test_client().post(URL, json=remote_call([ROW])).status_code == 200


# --- overload ---


def test_the_gate_runs_in_flight_calls_queues_some_and_refuses_the_rest() -> None:
    gate = CallGate(in_flight=1, queue_limit=0)

    with gate.slot(), pytest.raises(TooManyRequests) as refused, gate.slot():
        pass

    assert refused.value.headers["Retry-After"] == "1"
    with gate.slot():  # the slot was given back
        pass


def test_a_loading_model_is_a_503_with_retry_after_then_serves(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        handlers_dir=FIXTURE_HANDLERS / "bigquery_loading", bigquery_trust_front_end=True, model_loading="lazy"
    )
    client = app.test_client()

    first = client.post("/v1/bigquery/Late", json=remote_call([1]))
    deadline = time.monotonic() + 20
    while (later := client.post("/v1/bigquery/Late", json=remote_call([1]))).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    assert (first.status_code, first.headers["Retry-After"]) == (503, "5")
    assert "loading" in _only_error_message(first)
    assert later.json == {"replies": [{"x": 1, "model": "loaded"}]}


# --- who may call ---


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def certs(issuer: Issuer) -> Iterator[str]:
    with CertificateServer(issuer) as server:
        yield server.url


@pytest.fixture
def guarded(make_app: Callable[..., Flask], certs: str) -> FlaskClient:
    app = make_app(handlers_dir=HANDLERS, bigquery_invokers=(SERVICE_ACCOUNT,), bigquery_certs_url=certs)
    return app.test_client()


@pytest.mark.parametrize(
    ("claims", "status", "expected"),
    [
        pytest.param({}, 200, None, id="good"),
        pytest.param({"aud": "http://localhost/v1/bigquery/Typed"}, 200, None, id="audience-is-the-endpoint"),
        pytest.param({"exp": 1_000_000_000, "iat": 999_999_000}, 401, "expired", id="expired"),
        pytest.param({"aud": "https://elsewhere.example"}, 401, "audience", id="wrong-audience"),
        pytest.param({"email": "someone-else@p.iam.gserviceaccount.com"}, 403, "BIGQUERY_INVOKERS", id="unlisted"),
        pytest.param({"email_verified": False}, 401, "verified email", id="unverified-email"),
        pytest.param({"iss": "https://evil.example"}, 401, "not issued by Google", id="not-google"),
    ],
)
def test_tokens_are_verified(
    guarded: FlaskClient, issuer: Issuer, claims: dict[str, Any], status: int, expected: str | None
) -> None:
    token = issuer.token(claims.pop("aud", "http://localhost"), **claims)

    response = guarded.post(URL, json=remote_call([ROW]), headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == status, response.json
    if expected is not None:
        assert expected in _only_error_message(response)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param("Bearer not-a-jwt", id="garbage"),
        pytest.param("Basic x", id="basic"),
    ],
)
def test_missing_or_garbled_tokens_are_401s(guarded: FlaskClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = guarded.post(URL, json=remote_call([ROW]), headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _only_error_message(response)


def test_a_token_signed_by_another_key_is_refused(guarded: FlaskClient) -> None:
    forger = Issuer()  # same kid, another key

    response = guarded.post(
        URL, json=remote_call([ROW]), headers={"Authorization": f"Bearer {forger.token('http://localhost')}"}
    )

    assert response.status_code == 401


def test_bigquery_audience_replaces_the_service_url(make_app: Callable[..., Flask], certs: str, issuer: Issuer) -> None:
    app = make_app(
        handlers_dir=HANDLERS,
        bigquery_invokers=(SERVICE_ACCOUNT,),
        bigquery_certs_url=certs,
        bigquery_audience=("https://scoring.example",),
    )
    client = app.test_client()

    def status(audience: str) -> int:
        token = issuer.token(audience)
        return client.post(URL, json=remote_call([ROW]), headers={"Authorization": f"Bearer {token}"}).status_code

    assert (status("https://scoring.example"), status("http://localhost")) == (200, 401)


# --- settings, errors, names ---


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"BIGQUERY_INVOKERS": "not an email"}, "BIGQUERY_INVOKERS", id="invokers"),
        pytest.param({"BIGQUERY_MAX_ROWS": "0"}, "BIGQUERY_MAX_ROWS", id="max-rows"),
        pytest.param({"BIGQUERY_AUDIENCE": "scoring"}, "BIGQUERY_AUDIENCE", id="audience"),
        pytest.param(
            {"BIGQUERY_INVOKERS": "a@p.iam.gserviceaccount.com", "BIGQUERY_TRUST_FRONT_END": "true"},
            "BIGQUERY_TRUST_FRONT_END",
            id="both-modes",
        ),
    ],
)
def test_bad_settings_fail_at_start_naming_the_variable(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        Settings.from_env(environ)


def test_settings_are_read_once_from_the_environment() -> None:
    settings = Settings.from_env(
        {"BIGQUERY_INVOKERS": "A@p.iam.gserviceaccount.com, b@p.iam.gserviceaccount.com", "BIGQUERY_MAX_ROWS": "50"}
    )

    assert settings.bigquery_invokers == ("a@p.iam.gserviceaccount.com", "b@p.iam.gserviceaccount.com")
    assert (settings.bigquery_max_rows, settings.bigquery_enabled) == (50, True)


def test_error_body_is_only_an_error_message_under_1kb() -> None:
    assert error_body(ValidationFailed("x" * 5000)) == {"errorMessage": "x" * 897 + "..."}


def test_bigquery_is_a_listed_protocol_whose_url_is_a_reserved_model_name() -> None:
    assert PROTOCOL in PROTOCOLS
    assert PROTOCOL.error_body is error_body
    assert "bigquery" in reserved_names()


def test_the_openapi_document_describes_the_route_and_says_when_it_is_off(
    bq: FlaskClient, make_app: Callable[..., Flask]
) -> None:
    on = bq.get("/openapi.json").json
    off = make_app(handlers_dir=HANDLERS).test_client().get("/openapi.json").json

    operation = on["paths"]["/v1/bigquery/Typed"]["post"]
    assert operation["responses"]["429"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BigQueryError"
    }
    assert "/v1/bigquery/Typed" in off["paths"]
    assert "Off here" in next(tag["description"] for tag in off["tags"] if tag["name"] == "bigquery")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("post", "/v1/bigquery/Typed/extra", {}, 404, id="404-no-route-under-the-prefix"),
        pytest.param("post", "/v1/bigquery/", {}, 404, id="404-the-prefix-itself"),
        pytest.param("get", URL, None, 405, id="405-wrong-method"),
        pytest.param("post", URL, "x" * 2000, 413, id="413-body-too-large"),
    ],
)
def test_errors_the_router_raises_have_only_an_error_message(
    make_app: Callable[..., Flask], method: str, path: str, body: Any, status: int
) -> None:
    client = make_app(handlers_dir=HANDLERS, bigquery_trust_front_end=True, max_request_bytes=1000).test_client()
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    response = getattr(client, method)(path, **kwargs)

    assert response.status_code == status
    _only_error_message(response)
