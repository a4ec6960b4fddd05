"""With API keys on, a job is visible only with the key that created it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from serving.config.api_keys import parse_key_specs
from serving.jobs.records import Job, JobStatus, new_job_id
from serving.jobs.sql_engine import sqlite_url
from serving.jobs.sql_store import SqlJobStore
from serving.jobs.store import JobStore

ALICE = "alice-secret-0123456789abcd"
BOB = "bob-secret-0123456789abcdef"
PREFER = {"Prefer": "respond-async"}


def _as(secret: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **headers}


@pytest.fixture
def keyed(make_jobs_app: Callable[..., Flask]) -> FlaskClient:
    return make_jobs_app(api_keys=parse_key_specs(f"alice:{ALICE},bob:{BOB}")).test_client()


def _submit(client: FlaskClient, secret: str, **headers: str) -> str:
    response = client.post("/v1/Echo", json={"text": "hi"}, headers=_as(secret, **PREFER, **headers))
    assert response.status_code == 202, response.get_json()
    job_id: str = response.get_json()["job_id"]
    return job_id


def test_only_the_creating_key_sees_the_job(keyed: FlaskClient) -> None:
    job_id = _submit(keyed, ALICE)

    mine = keyed.get(f"/v1/jobs/{job_id}", headers=_as(ALICE))
    theirs = keyed.get(f"/v1/jobs/{job_id}", headers=_as(BOB))
    nobody = keyed.get(f"/v1/jobs/{job_id}")

    assert mine.status_code == 200
    assert mine.get_json()["job_id"] == job_id
    assert theirs.status_code == 404  # not 403: another key cannot even learn it exists
    assert theirs.get_json()["code"] == "job_not_found"
    assert nobody.status_code == 401


def test_another_key_cannot_cancel_the_job(keyed: FlaskClient) -> None:
    job_id = _submit(keyed, ALICE)

    refused = keyed.delete(f"/v1/jobs/{job_id}", headers=_as(BOB))
    still = keyed.get(f"/v1/jobs/{job_id}", headers=_as(ALICE)).get_json()
    canceled = keyed.delete(f"/v1/jobs/{job_id}", headers=_as(ALICE))

    assert refused.status_code == 404
    assert still["status"] == "queued"
    assert canceled.status_code == 200
    assert canceled.get_json()["status"] == "canceled"


def test_idempotency_keys_are_per_api_key(keyed: FlaskClient) -> None:
    alice_first = _submit(keyed, ALICE, **{"Idempotency-Key": "order-42"})
    alice_again = _submit(keyed, ALICE, **{"Idempotency-Key": "order-42"})
    bob = _submit(keyed, BOB, **{"Idempotency-Key": "order-42"})

    assert alice_again == alice_first
    assert bob != alice_first  # Bob's retry key never finds (or reveals) Alice's job
    assert keyed.get(f"/v1/jobs/{bob}", headers=_as(BOB)).status_code == 200


def test_without_keys_every_client_sees_every_job(make_jobs_app: Callable[..., Flask]) -> None:
    client = make_jobs_app().test_client()
    job_id = client.post("/v1/Echo", json={"text": "hi"}, headers=PREFER).get_json()["job_id"]

    assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_the_store_keeps_the_owner(store: JobStore) -> None:
    now = 1_700_000_000.0
    job = Job(
        id=new_job_id(),
        model="Echo",
        status=JobStatus.QUEUED,
        payload={"text": "hi"},
        created_at=now,
        updated_at=now,
        max_attempts=3,
        owner="alice",
    )

    store.create(job)
    found = store.get(job.id)

    assert found is not None
    assert found.owner == "alice"


def test_a_database_from_before_owners_gains_the_column(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "jobs.sqlite")
    old = SqlJobStore(url, data_dir=tmp_path)
    old.prepare()
    old.close()
    # Make it look like the previous release left it: no owner column, schema version 1.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE jobs DROP COLUMN owner"))
        conn.execute(sa.text("DELETE FROM jobs_schema WHERE version = 2"))
    engine.dispose()

    upgraded = SqlJobStore(url, data_dir=tmp_path)
    upgraded.prepare()
    job = Job(
        id=new_job_id(),
        model="Echo",
        status=JobStatus.QUEUED,
        payload={},
        created_at=1.0,
        updated_at=1.0,
        max_attempts=3,
        owner="bob",
    )
    upgraded.create(job)
    found = upgraded.get(job.id)
    upgraded.close()

    assert found is not None
    assert found.owner == "bob"
