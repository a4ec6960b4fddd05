"""Artifacts from local paths, the URIs and settings that name them, and the served version."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from serving.config.artifact_uris import CloudStorageSource, LocalSource, parse_artifact_uri, parse_model_artifacts
from serving.config.settings import PROJECT_ROOT, Settings, SettingsError
from serving.runtime.handlers import HandlerError
from tests.conftest import FIXTURE_HANDLERS

ARTIFACT_HANDLERS = FIXTURE_HANDLERS / "artifacts"
LOCAL_FILES = PROJECT_ROOT / "tests" / "fixtures" / "artifacts" / "files"
VERSION = re.compile(r"^1\.0\+[0-9a-f]{12}$")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gs://models/digits/", CloudStorageSource("models", "digits/")),
        ("gs://models/digits/model.onnx", CloudStorageSource("models", "digits/model.onnx")),
        ("gs://models", CloudStorageSource("models", "")),
        ("gs://models/", CloudStorageSource("models", "")),
        ("gs://my_bucket.example.com/a/b/", CloudStorageSource("my_bucket.example.com", "a/b/")),
        ("/mnt/models/digits", LocalSource(Path("/mnt/models/digits"))),
        ("models/digits", LocalSource(PROJECT_ROOT / "models" / "digits")),
    ],
    ids=["prefix", "one-object", "bucket", "bucket-slash", "dotted-bucket", "absolute", "relative"],
)
def test_artifact_uris_parse(raw: str, expected: object) -> None:
    assert parse_artifact_uri(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("s3://models/digits/", "found a s3:// URI"),
        ("gs://", "bucket name"),
        ("gs://UPPER/x", "bucket name"),
        ("gs://ab/x", "bucket name"),
        ("gs://models/a//b", "empty, '.' or '..' parts"),
        ("gs://models/../etc/passwd", "empty, '.' or '..' parts"),
        ("", "empty value"),
        ("gs://models/a\nb", "control characters"),
    ],
    ids=["scheme", "no-bucket", "uppercase", "short", "empty-part", "dot-dot", "empty", "newline"],
)
def test_bad_artifact_uris_say_what_was_expected(raw: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_artifact_uri(raw)


def test_storage_uri_is_a_directory_with_or_without_its_slash() -> None:
    with_slash = Settings.from_env({"AIP_STORAGE_URI": "gs://vertex-models/model/"}).aip_storage_uri
    without = Settings.from_env({"AIP_STORAGE_URI": "gs://vertex-models/model"}).aip_storage_uri

    assert with_slash == without == CloudStorageSource("vertex-models", "model/")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_ARTIFACTS": "Files"}, "MODEL_ARTIFACTS='Files' is not valid: expected Name=uri pairs"),
        ({"MODEL_ARTIFACTS": "Files=s3://b/x"}, "MODEL_ARTIFACTS='Files=s3://b/x' is not valid: Files: expected gs://"),
        ({"MODEL_ARTIFACTS": "A=gs://bkt/a,A=gs://bkt/b"}, "model 'A' is named twice"),
        ({"AIP_STORAGE_URI": "/local/dir"}, "AIP_STORAGE_URI='/local/dir' is not valid: expected a gs://"),
        ({"STORAGE_EMULATOR_HOST": "http://host/path"}, "STORAGE_EMULATOR_HOST='http://host/path' is not valid"),
        ({"ARTIFACTS_TIMEOUT_S": "0"}, "ARTIFACTS_TIMEOUT_S='0' is not valid"),
    ],
    ids=["no-uri", "bad-scheme", "twice", "aip-local", "emulator-path", "timeout"],
)
def test_bad_artifact_settings_stop_start_up_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_model_artifacts_pairs_parse() -> None:
    assert parse_model_artifacts(" Files = gs://bkt/files/ , Other=/srv/other ,") == (
        ("Files", CloudStorageSource("bkt", "files/")),
        ("Other", LocalSource(Path("/srv/other"))),
    )


def test_local_directory_artifacts_are_served_with_a_versioned_header(make_app: Callable[..., Flask]) -> None:
    client = make_app(handlers_dir=ARTIFACT_HANDLERS).test_client()

    response = client.post("/v1/Files", json={})
    listing = client.get("/v1/models").get_json()

    assert response.status_code == 200
    assert response.get_json() == {"result": {"a.txt": "alpha\n", "sub/b.txt": "beta\n"}}
    assert VERSION.match(response.headers["X-Model-Version"])
    entry = next(model for model in listing["models"] if model["name"] == "Files")
    assert entry["version"] == response.headers["X-Model-Version"]
    assert entry["artifacts"]["uri"] == str(LOCAL_FILES)
    assert entry["artifacts"]["digest"].startswith(response.headers["X-Model-Version"].split("+")[1])
    plain = client.post("/v1/Plain", json={})
    assert plain.headers["X-Model-Version"] == "0"  # no artifacts: VERSION alone


def test_changed_local_files_change_the_version(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    copy = tmp_path / "files"
    shutil.copytree(LOCAL_FILES, copy)
    artifacts = parse_model_artifacts(f"Files={copy}")
    before = make_app(handlers_dir=ARTIFACT_HANDLERS, model_artifacts=artifacts).test_client()
    first = before.post("/v1/Files", json={}).headers["X-Model-Version"]

    (copy / "a.txt").write_text("gamma\n")
    after = make_app(handlers_dir=ARTIFACT_HANDLERS, model_artifacts=artifacts).test_client()
    response = after.post("/v1/Files", json={})

    assert response.get_json()["result"]["a.txt"] == "gamma\n"
    assert response.headers["X-Model-Version"] != first


def test_one_local_file_is_given_as_a_directory_holding_it(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    client = make_app(
        handlers_dir=ARTIFACT_HANDLERS,
        model_artifacts=parse_model_artifacts(f"Files={LOCAL_FILES / 'sub' / 'b.txt'}"),
        artifacts_cache_dir=tmp_path / "cache",
    ).test_client()

    assert client.post("/v1/Files", json={}).get_json() == {"result": {"b.txt": "beta\n"}}


def test_missing_local_artifacts_fail_that_model_only(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    client = make_app(
        handlers_dir=ARTIFACT_HANDLERS, model_artifacts=parse_model_artifacts(f"Files={missing}")
    ).test_client()

    ready = client.get("/readyz")
    response = client.post("/v1/Files", json={})

    assert ready.status_code == 503
    assert ready.get_json()["models"]["Files"] == {
        "status": "failed",
        "reason": f"artifacts {missing}: no such file or directory",
    }
    assert response.status_code == 503
    assert "X-Model-Version" not in response.headers
    assert client.post("/v1/Plain", json={}).status_code == 200


@pytest.mark.parametrize(
    ("env", "error", "message"),
    [
        ({"MODEL_ARTIFACTS": "Nope=gs://bkt/x/"}, SettingsError, "MODEL_ARTIFACTS names 'Nope', which is not a served"),
        ({"MODEL_ARTIFACTS": "Plain=gs://bkt/x/"}, SettingsError, "its setup() takes no artifacts parameter"),
    ],
    ids=["unknown-model", "setup-without-parameter"],
)
def test_model_artifacts_for_the_wrong_model_stop_start_up(
    make_app: Callable[..., Flask], env: dict[str, str], error: type[Exception], message: str
) -> None:
    settings = Settings.from_env(env)
    with pytest.raises(error, match=re.escape(message)):
        make_app(handlers_dir=ARTIFACT_HANDLERS, model_artifacts=settings.model_artifacts)


def test_setup_with_artifacts_but_none_given_names_the_file(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    handler = tmp_path / "handlers" / "bare.py"
    handler.parent.mkdir()
    handler.write_text("INPUT_SCHEMA = {'type': 'object'}\ndef setup(artifacts): pass\ndef predict(m, p): return 1\n")

    with pytest.raises(HandlerError, match=re.escape(f"{handler}: expected ARTIFACTS")):
        make_app(handlers_dir=handler.parent)


def test_version_is_in_the_request_log_and_metrics(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(handlers_dir=ARTIFACT_HANDLERS).test_client()

    with caplog.at_level("INFO", logger="serving.request"):
        version = client.post("/v1/Files", json={}).headers["X-Model-Version"]
    metrics = client.get("/metrics").get_data(as_text=True)

    line = next(record for record in caplog.records if record.name == "serving.request")
    assert line.__dict__["model_version"] == version
    assert f'model_serving_model_info{{model="Files",version="{version}"}} 1.0' in metrics


def test_a_cache_directory_others_may_write_is_refused(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    client = make_app(
        handlers_dir=ARTIFACT_HANDLERS,
        model_artifacts=parse_model_artifacts(f"Files={LOCAL_FILES / 'a.txt'}"),
        artifacts_cache_dir=shared,
    ).test_client()

    reason = client.get("/readyz").get_json()["models"]["Files"]["reason"]

    assert reason.startswith(f"artifacts {LOCAL_FILES / 'a.txt'}: ARTIFACTS_CACHE_DIR='{shared}'")
    assert "others may write to it" in reason


def test_versioned_predict_url_takes_the_served_version_too(make_app: Callable[..., Flask]) -> None:
    client = make_app(handlers_dir=ARTIFACT_HANDLERS).test_client()
    served = client.post("/v1/Files", json={}).headers["X-Model-Version"]

    by_handler_version = client.post("/v1/models/Files/versions/1.0:predict", json={"instances": [{}]})
    by_served_version = client.post(f"/v1/models/Files/versions/{served}:predict", json={"instances": [{}]})
    by_other_digest = client.post("/v1/models/Files/versions/1.0+000000000000:predict", json={"instances": [{}]})

    assert by_handler_version.status_code == 200
    assert by_served_version.status_code == 200
    assert by_other_digest.status_code == 404
