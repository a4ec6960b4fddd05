"""A handler whose ARTIFACTS are `gs://...`, scored with its files from the Cloud Storage emulator.

The pipeline runs on two DirectRunner worker processes (`multi_processing`), like two
workers of one Dataflow machine: each process runs `setup()` once (Beam's shared model),
and the objects are downloaded once in all (the artifact cache's lock and marker), as
gunicorn's workers share them in the server.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURE_HANDLERS, require_service
from tests.offline.conftest import BEAM_MISSING, read_shards
from tests.storage_emulator import StorageEmulator, emulator_installed, running_storage_emulator

pytest.importorskip("apache_beam", reason=BEAM_MISSING)

from apache_beam.options.pipeline_options import PipelineOptions

from serving.offline.model_handler import ArtifactFetching, HandlerModelHandler
from serving.offline.pipeline import ScoreJob, score

pytestmark = pytest.mark.e2e

REMOTE = FIXTURE_HANDLERS / "offline" / "remote.py"  # ARTIFACTS = "gs://offline-fixture/weights/"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageEmulator]:
    require_service(
        emulator_installed(), "gcp-storage-emulator is not installed (pip install -r requirements-beam-test.txt)"
    )
    with running_storage_emulator(tmp_path_factory.mktemp("gcs")) as server:
        server.upload("offline-fixture", {"weights/weights.json": json.dumps({"weight": 3}).encode()})
        yield server


def _score(handler: HandlerModelHandler, tmp_path: Path, rows: list[Any], *flags: str) -> tuple[Any, Path]:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out" / "scores"
    summary = score(handler, ScoreJob(str(source), str(out), str(out) + ".errors", "id"), PipelineOptions(list(flags)))
    return summary, out


def test_gs_artifacts_are_fetched_once_and_set_up_once_per_worker_process(
    emulator: StorageEmulator, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    handler = HandlerModelHandler(
        REMOTE, fetching=ArtifactFetching(cache_dir=cache, timeout_s=10, emulator_host=emulator.url)
    )
    rows = [{"id": index, "x": index} for index in range(400)]

    summary, out = _score(handler, tmp_path, rows, "--direct_num_workers=2", "--direct_running_mode=multi_processing")

    results = read_shards(out)
    assert summary.scored == 400
    assert sorted((r["key"], r["result"]) for r in results) == [(index, 3.0 * index) for index in range(400)]
    versions = {r["model_version"] for r in results}
    assert len(versions) == 1
    assert re.fullmatch(r"2\.0\+[0-9a-f]{12}", versions.pop())
    assert len(emulator.downloads("offline-fixture")) == 1
    setups = (cache / "setups.log").read_text().split()
    assert 1 <= len(setups) <= 2
    assert str(os.getpid()) not in setups  # the workers' own processes loaded it
    assert len(set(setups)) == len(setups), "a worker process ran setup() twice"


def test_an_artifact_that_is_not_there_fails_the_run_saying_which(emulator: StorageEmulator, tmp_path: Path) -> None:
    handler = HandlerModelHandler(
        REMOTE,
        artifacts="gs://offline-fixture/no-such-prefix/",
        fetching=ArtifactFetching(cache_dir=tmp_path / "cache", timeout_s=5, emulator_host=emulator.url),
    )

    with pytest.raises(Exception, match="gs://offline-fixture/no-such-prefix/"):
        _score(handler, tmp_path, [{"id": 1, "x": 1}])
