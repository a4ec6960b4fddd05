"""Artifacts from a real Cloud Storage API: gcp-storage-emulator on 127.0.0.1.

Each test uploads to a bucket of its own on one emulator per test session; the tests that
stop the emulator start one of their own.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from serving.config.artifact_uris import parse_model_artifacts
from serving.config.settings import PROJECT_ROOT
from serving.runtime.cloud_storage import RemoteObject, path_clash
from tests.conftest import FIXTURE_HANDLERS, require_service
from tests.servers import free_port, gunicorn_command, running_server
from tests.storage_emulator import StorageEmulator, emulator_installed, running_storage_emulator

ARTIFACT_HANDLERS = FIXTURE_HANDLERS / "artifacts"
VERSION = re.compile(r"^1\.0\+([0-9a-f]{12})$")
DIGITS_FILES = ("digits.onnx", "artifact.json")
NOT_INSTALLED = "gcp-storage-emulator is not installed: pip install -r requirements-test.txt"
FILES = {"model/a.txt": b"alpha\n", "model/sub/b.txt": b"beta\n", "model/c.bin": bytes(range(256)) * 64}


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageEmulator]:
    require_service(
        emulator_installed(), "gcp-storage-emulator is not installed (pip install -r requirements-test.txt)"
    )
    with running_storage_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture
def bucket() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def serve(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., FlaskClient]:
    """A test client of the artifact fixture handlers, `Files` served from `uri` on `emulator`."""

    def build(emulator: StorageEmulator, uri: str, **overrides: Any) -> FlaskClient:
        settings: dict[str, Any] = {
            "handlers_dir": ARTIFACT_HANDLERS,
            "model_artifacts": parse_model_artifacts(f"Files={uri}"),
            "storage_emulator_host": emulator.url,
            "artifacts_cache_dir": tmp_path / "cache",
            "artifacts_timeout_s": 3.0,
            **overrides,
        }
        client = make_app(**settings).test_client()
        # As App Engine's warmup does: wait for the models that load from Cloud Storage in
        # the background (eager loading starts them at the first request).
        client.get("/_ah/warmup")
        return client

    return build


def test_prefix_with_several_objects_is_served_with_names_relative_to_it(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient]
) -> None:
    emulator.upload(bucket, {**FILES, "elsewhere/x.txt": b"not this one\n"})
    client = serve(emulator, f"gs://{bucket}/model/")

    response = client.post("/v1/Files", json={})
    entry = client.get("/v1/models/Files").get_json()

    assert response.status_code == 200
    result = response.get_json()["result"]
    assert sorted(result) == ["a.txt", "c.bin", "sub/b.txt"]
    assert result["sub/b.txt"] == "beta\n"
    version = VERSION.match(response.headers["X-Model-Version"])
    assert version is not None
    assert entry["artifacts"]["uri"] == f"gs://{bucket}/model/"
    assert entry["artifacts"]["digest"].startswith(version.group(1))
    assert len(emulator.downloads(bucket)) == 3


def test_one_object_uri_gives_a_directory_with_that_file(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient]
) -> None:
    emulator.upload(bucket, FILES)
    client = serve(emulator, f"gs://{bucket}/model/sub/b.txt")

    response = client.post("/v1/Files", json={})

    assert response.get_json() == {"result": {"b.txt": "beta\n"}}
    assert VERSION.match(response.headers["X-Model-Version"])


@pytest.mark.parametrize("slash", ["/", ""], ids=["with-slash", "without-slash"])
def test_vertex_ai_storage_uri_overrides_the_served_models_artifacts(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient], slash: str
) -> None:
    emulator.upload(bucket, FILES)
    client = serve(
        emulator,
        "gs://unused-bucket/never/",
        aip_storage_uri=_aip_uri(f"gs://{bucket}/model{slash}"),
        aip_health_route="/health",
        aip_predict_route="/predict",
        default_model="Files",
    )

    health = client.get("/health")
    response = client.post("/predict", json={"instances": [{}]})

    assert health.status_code == 200
    assert sorted(response.get_json()["predictions"][0]) == ["a.txt", "c.bin", "sub/b.txt"]
    assert client.get("/v1/models/Files").get_json()["artifacts"]["uri"] == f"gs://{bucket}/model/"


def _aip_uri(raw: str) -> Any:
    from serving.config.settings import Settings

    return Settings.from_env({"AIP_STORAGE_URI": raw}).aip_storage_uri


def test_a_new_generation_is_a_new_version_after_a_restart(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient]
) -> None:
    emulator.upload(bucket, FILES)
    first = serve(emulator, f"gs://{bucket}/model/").post("/v1/Files", json={})
    again = serve(emulator, f"gs://{bucket}/model/").post("/v1/Files", json={})
    downloads_before = len(emulator.downloads(bucket))

    emulator.upload(bucket, {"model/a.txt": b"alpha, retrained\n"})
    restarted = serve(emulator, f"gs://{bucket}/model/").post("/v1/Files", json={})

    assert again.headers["X-Model-Version"] == first.headers["X-Model-Version"]
    assert downloads_before == 3  # the second start found them in the cache
    assert restarted.get_json()["result"]["a.txt"] == "alpha, retrained\n"
    assert restarted.headers["X-Model-Version"] != first.headers["X-Model-Version"]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("gs://{bucket}/model/missing.onnx", "no object gs://{bucket}/model/missing.onnx and none under"),
        ("gs://{bucket}/nothing-here/", "no objects under gs://{bucket}/nothing-here/"),
        ("gs://no-such-bucket-{bucket}/model/", "bucket no-such-bucket-{bucket} not found (404)"),
    ],
    ids=["missing-object", "empty-prefix", "missing-bucket"],
)
def test_missing_artifacts_fail_that_model_with_a_reason_naming_the_uri(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient], uri: str, problem: str
) -> None:
    emulator.upload(bucket, FILES)
    uri = uri.format(bucket=bucket)
    client = serve(emulator, uri)

    ready = client.get("/readyz").get_json()
    entry = client.get("/v1/models/Files").get_json()

    assert ready["models"]["Files"]["status"] == "failed"
    assert ready["models"]["Files"]["reason"].startswith(f"artifacts {uri}: ")
    assert problem.format(bucket=bucket) in ready["models"]["Files"]["reason"]
    assert entry["status"] == "failed"
    assert entry["artifacts"] == {"uri": uri, "digest": None}
    assert client.post("/v1/Files", json={}).status_code == 503
    assert client.post("/v1/Plain", json={}).get_json() == {"result": "ok"}


def test_a_corrupt_object_fails_its_checksum(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient], tmp_path: Path
) -> None:
    emulator.upload(bucket, FILES)
    # Same size, different bytes: only a checksum can tell.
    emulator.stored_file(bucket, "model/c.bin").write_bytes(bytes(reversed(FILES["model/c.bin"])))
    client = serve(emulator, f"gs://{bucket}/model/")

    reason = client.get("/readyz").get_json()["models"]["Files"]["reason"]

    assert reason.startswith(f"artifacts gs://{bucket}/model/: gs://{bucket}/model/c.bin: checksum mismatch")
    assert client.post("/v1/Plain", json={}).status_code == 200
    # Nothing half-verified is left where a later start would take it for the artifacts.
    assert not list((tmp_path / "cache").glob("*.complete"))
    assert not [path for path in (tmp_path / "cache").rglob("*") if path.name.endswith(".part")]


def test_an_unreachable_storage_fails_after_retrying(serve: Callable[..., FlaskClient], tmp_path: Path) -> None:
    # A port bound but not listening refuses every connection, and no other process can
    # start listening on it while this socket holds it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        nowhere = StorageEmulator(f"http://127.0.0.1:{held.getsockname()[1]}", None, tmp_path, tmp_path / "none.log")  # type: ignore[arg-type]

        client = serve(nowhere, "gs://some-bucket/model/", artifacts_timeout_s=2.0)
        reason = client.get("/readyz").get_json()["models"]["Files"]["reason"]

    assert reason == (
        "artifacts gs://some-bucket/model/: Cloud Storage could not be reached (retried with backoff, "
        "ARTIFACTS_TIMEOUT_S=2; last error: ConnectionRefusedError: [Errno 111] Connection refused)"
    )


def test_storage_that_comes_back_while_retrying_serves_the_model(
    serve: Callable[..., FlaskClient], bucket: str, tmp_path: Path
) -> None:
    require_service(emulator_installed(), NOT_INSTALLED)
    with running_storage_emulator(tmp_path / "flaky") as first:
        first.upload(bucket, FILES)
        port = int(first.url.rsplit(":", 1)[1])
    # The same objects come back on the same port a second after the server starts trying.
    returned: list[StorageEmulator] = []
    stop = threading.Event()

    def come_back() -> None:
        time.sleep(1.0)
        with running_storage_emulator(tmp_path / "flaky", port=port) as again:
            returned.append(again)
            stop.wait(60)

    thread = threading.Thread(target=come_back, daemon=True)
    thread.start()
    try:
        client = serve(first, f"gs://{bucket}/model/", artifacts_timeout_s=30.0)
        response = client.post("/v1/Files", json={})
    finally:
        stop.set()
        thread.join(15)

    assert response.status_code == 200
    assert sorted(response.get_json()["result"]) == ["a.txt", "c.bin", "sub/b.txt"]
    assert returned
    assert len(returned[0].downloads(bucket)) == 3


# --- under gunicorn ---


def _gunicorn(tmp_path: Path, env: dict[str, str]) -> Any:
    """gunicorn as app.yaml runs it, ready once it answers /healthz (a failed model keeps /readyz at 503)."""
    port = free_port()
    base = {"PORT": str(port), "HOST": "127.0.0.1", "JOBS_DATA_DIR": str(tmp_path / "jobs")}
    log_path = tmp_path / "gunicorn.log"
    return running_server(gunicorn_command(), port=port, log_path=log_path, env=base | env, ready_path="/healthz")


NESTED = {"a/model.txt": b"model a\n", "b/model.txt": b"model b\n", "c/d/e.txt": b"e\n"}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", {"a/model.txt": "model a\n", "b/model.txt": "model b\n", "c/d/e.txt": "e\n"}),
        ("c/", {"d/e.txt": "e\n"}),
        ("c/d/", {"e.txt": "e\n"}),
        ("c", {"d/e.txt": "e\n"}),  # a folder named without its slash
    ],
    ids=["bucket-root", "prefix", "deeper-prefix", "folder-without-slash"],
)
def test_every_prefix_keeps_the_paths_below_it(
    emulator: StorageEmulator, bucket: str, serve: Callable[..., FlaskClient], prefix: str, expected: dict[str, str]
) -> None:
    # Issue 22: the bucket root flattened a/model.txt and b/model.txt into one model.txt.
    emulator.upload(bucket, NESTED)

    response = serve(emulator, f"gs://{bucket}/{prefix}").post("/v1/Files", json={})

    assert response.status_code == 200
    assert response.get_json()["result"] == expected


@pytest.mark.parametrize(
    ("names", "clash"),
    [
        (["a/model.txt", "b/model.txt", "c/d/e.txt"], None),
        (["a", "a/b.txt"], "'a' and 'a/b.txt'"),
        (["a/b.txt", "a"], "'a/b.txt' and 'a'"),
        (["x/a", "x/a/b/c.txt"], "'x/a' and 'x/a/b/c.txt'"),
        (["Weights.bin", "weights.bin"], "'Weights.bin' and 'weights.bin'"),
        (["ab", "a/b"], None),
    ],
    ids=["distinct", "file-then-folder", "folder-then-file", "file-above-a-deep-folder", "case-only", "no-clash"],
)
def test_path_clash_names_two_objects_that_cannot_both_be_stored(names: list[str], clash: str | None) -> None:
    objects = [RemoteObject(name=n, relative=n, generation=1, size=1, crc32c=None, md5=None) for n in names]

    found = path_clash(objects)

    assert found == clash if clash is None else (found is not None and clash in found)


def test_two_objects_for_one_local_path_fail_the_model(
    emulator: StorageEmulator,
    bucket: str,
    serve: Callable[..., FlaskClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The emulator stores objects as files, so it cannot hold both `a` and `a/b`: the
    # table above covers that case; names differing in case it can hold.
    emulator.upload(bucket, {"model/Weights.bin": b"one\n", "model/weights.bin": b"two\n"})

    client = serve(emulator, f"gs://{bucket}/model/")
    ready = client.get("/readyz").get_json()

    assert ready["models"]["Files"]["status"] == "failed"
    assert "map to one local path" in ready["models"]["Files"]["reason"]
    assert "map to one local path" in caplog.text
    assert client.post("/v1/Files", json={}).status_code == 503
    assert client.post("/v1/Plain", json={}).get_json() == {"result": "ok"}


@pytest.mark.e2e
def test_gunicorn_serves_a_whole_bucket_with_its_paths(emulator: StorageEmulator, bucket: str, tmp_path: Path) -> None:
    emulator.upload(bucket, NESTED)
    env = {
        "HANDLERS_DIR": str(ARTIFACT_HANDLERS),
        "MODEL_ARTIFACTS": f"Files=gs://{bucket}/",
        "STORAGE_EMULATOR_HOST": emulator.url,
        "ARTIFACTS_CACHE_DIR": str(tmp_path / "cache"),
    }
    with _gunicorn(tmp_path, env) as server:
        _wait_until_settled(server.url, "Files")
        with urllib.request.urlopen(_post(server.url + "/v1/Files"), timeout=10) as response:
            result = json.loads(response.read())["result"]

    assert result == {"a/model.txt": "model a\n", "b/model.txt": "model b\n", "c/d/e.txt": "e\n"}


def _post(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"}, method="POST")


@pytest.mark.e2e
@pytest.mark.parametrize("loading", ["eager", "lazy"])
def test_two_gunicorn_workers_download_once(
    emulator: StorageEmulator, bucket: str, tmp_path: Path, loading: str
) -> None:
    emulator.upload(bucket, FILES)
    env = {
        "HANDLERS_DIR": str(ARTIFACT_HANDLERS),
        "MODEL_ARTIFACTS": f"Files=gs://{bucket}/model/",
        "STORAGE_EMULATOR_HOST": emulator.url,
        "ARTIFACTS_CACHE_DIR": str(tmp_path / "cache"),
        "MODEL_LOADING": loading,
        "GUNICORN_WORKERS": "2",
    }
    with _gunicorn(tmp_path, env) as server:
        _wait_until_settled(server.url, "Files")
        versions = set()
        # Each new connection may go to either worker: ask until both have loaded the
        # model (lazy) or enough times to have reached both (eager).
        for _ in range(200):
            with urllib.request.urlopen(_post(server.url + "/v1/Files"), timeout=10) as response:
                versions.add(response.headers["X-Model-Version"])
            if loading == "eager" or server.log().count('"message":"model Files ready') >= 2:
                break
        log = server.log()

    assert len(versions) == 1
    if loading == "lazy":
        assert log.count('"message":"model Files ready') == 2
        assert log.count("found in the cache") == 1
    assert len(emulator.downloads(bucket)) == 3  # one per object, for the whole instance
    assert log.count('"message":"downloaded artifacts') == 1


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("then", "settles_as"),
    [
        pytest.param("kill", "failed", id="storage-frozen-then-killed"),
        pytest.param("resume", "ready", id="storage-frozen-then-resumed"),
    ],
)
def test_the_server_listens_while_storage_is_frozen(bucket: str, tmp_path: Path, then: str, settles_as: str) -> None:
    """Issue 22: a frozen store kept gunicorn from binding its port for about 310 s."""
    require_service(
        emulator_installed(), "gcp-storage-emulator is not installed (pip install -r requirements-test.txt)"
    )
    with running_storage_emulator(tmp_path / "frozen") as emulator:
        emulator.upload(bucket, FILES)
        env = {
            "GUNICORN_WORKERS": "2",
            "HANDLERS_DIR": str(ARTIFACT_HANDLERS),
            "MODEL_ARTIFACTS": f"Files=gs://{bucket}/model/",
            "STORAGE_EMULATOR_HOST": emulator.url,
            "ARTIFACTS_CACHE_DIR": str(tmp_path / "cache"),
            # Far longer than the server may take to listen: it must not wait for storage.
            "ARTIFACTS_TIMEOUT_S": "20",
        }
        emulator.stop(signal.SIGSTOP)  # every request to it now hangs
        started = time.monotonic()
        with _gunicorn(tmp_path, env) as server:
            listening_after = time.monotonic() - started
            loading_status, loading = _get_json(server.url + "/readyz")
            with urllib.request.urlopen(_post(server.url + "/v1/Plain"), timeout=10) as plain:
                plain_status = plain.status
            files_status, files = _post_json(server.url + "/v1/Files")
            if then == "kill":
                emulator.process.kill()
            else:
                emulator.process.send_signal(signal.SIGCONT)
            settled = _wait_until_settled(server.url, "Files", timeout=90)
            after_status, _ = _post_json(server.url + "/v1/Files")
            log = server.log()

    assert listening_after < ARTIFACTS_TIMEOUT_WHILE_LISTENING_S, f"listened after {listening_after:.1f} s"
    assert loading_status == 503
    assert loading["models"] == {"Files": {"status": "loading"}, "Plain": {"status": "ready"}}
    assert plain_status == 200  # a model that needs no storage serves meanwhile
    assert files_status == 503
    assert files["status"] == "loading"
    assert settled["status"] == settles_as
    assert after_status == (200 if settles_as == "ready" else 503)
    if settles_as == "failed":
        assert settled["reason"].startswith(f"artifacts gs://{bucket}/model/: Cloud Storage could not be reached")
        assert "ARTIFACTS_TIMEOUT_S=20; last error: " in settled["reason"]
    assert "listing artifacts" in log
    assert not re.search(r"was sent SIG|Traceback", log), log[-3000:]


# Well below ARTIFACTS_TIMEOUT_S (20) there, so a server that waited for storage fails it.
ARTIFACTS_TIMEOUT_WHILE_LISTENING_S = 15.0


def _wait_until_settled(url: str, model: str, timeout: float = 60.0) -> Any:
    """`model`'s /readyz entry once it is no longer pending or loading."""
    deadline = time.monotonic() + timeout
    while True:
        _, body = _get_json(url + "/readyz")
        entry = body["models"][model]
        if entry["status"] not in ("pending", "loading") or time.monotonic() > deadline:
            return entry
        time.sleep(0.2)


def _post_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(_post(url), timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- the project's own Digits, its ONNX file from a bucket ---


def test_digits_serves_its_onnx_file_from_a_bucket(
    emulator: StorageEmulator, bucket: str, make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    digits_dir = PROJECT_ROOT / "models" / "digits"
    # The serving form and its manifest (whose sha256 the model checks), as a user uploads them.
    emulator.upload(bucket, {f"digits/{name}": (digits_dir / name).read_bytes() for name in DIGITS_FILES})
    from handlers.digits import INPUT_SCHEMA

    example = INPUT_SCHEMA["examples"][0]
    local = make_app(model_loading="lazy").test_client()
    remote = make_app(
        model_loading="lazy",
        model_artifacts=parse_model_artifacts(f"Digits=gs://{bucket}/digits/"),
        storage_emulator_host=emulator.url,
        artifacts_cache_dir=tmp_path / "cache",
    ).test_client()

    from_disk = local.post("/v1/Digits", json=example)
    from_bucket = remote.post("/v1/Digits", json=example)
    entry = remote.get("/v1/models/Digits").get_json()

    assert from_bucket.status_code == 200
    assert from_bucket.get_json() == from_disk.get_json()
    assert re.fullmatch(r"1\.0\.0\+[0-9a-f]{12}", from_bucket.headers["X-Model-Version"])
    assert from_bucket.headers["X-Model-Version"] != from_disk.headers["X-Model-Version"]
    assert entry["artifacts"]["uri"] == f"gs://{bucket}/digits/"
    # The directory docs/artifacts.md names: gcs-<the digest's first 32 hex digits>.
    assert "`ARTIFACTS_CACHE_DIR/gcs-<32 hex>/`" in (PROJECT_ROOT / "docs" / "artifacts.md").read_text()
    directory = tmp_path / "cache" / f"gcs-{entry['artifacts']['digest'][:32]}"
    assert sorted(path.name for path in directory.iterdir() if not path.name.startswith(".")) == sorted(DIGITS_FILES)
    assert sorted(path.name for path in (tmp_path / "cache").glob("gcs-*/*")) == sorted(DIGITS_FILES)
    assert len(emulator.downloads(bucket)) == len(DIGITS_FILES)
