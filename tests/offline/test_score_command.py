"""`flask --app main score`: its errors (in process) and one real run in a fresh process."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from serving.config.settings import PROJECT_ROOT
from tests.offline.conftest import BEAM_MISSING, read_shards

pytest.importorskip("apache_beam", reason=BEAM_MISSING)

IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": index, **IRIS_ROW}) + "\n" for index in range(5)))
    return path


@pytest.fixture
def invoke(make_app: Callable[..., Flask]) -> Callable[..., Result]:
    app = make_app(model_loading="lazy")
    return lambda *args: app.test_cli_runner().invoke(args=["score", *args])


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        pytest.param(["Nope"], 1, "no model named 'Nope' in ", id="unknown-model"),
        pytest.param(["Iris", "--input", "{missing}"], 1, "no file matches --input ", id="no-input-file"),
        pytest.param(["Iris", "--input", "{directory}"], 1, "is not a readable file", id="input-is-a-directory"),
        pytest.param(["Iris", "--num_worker=3"], 2, "unknown pipeline option --num_worker", id="unknown-option"),
        pytest.param(
            ["Iris", "--direct_num_workers=many"],
            2,
            "bad pipeline option: argument --direct_num_workers: invalid int value: 'many'",
            id="bad-option-value",
        ),
        pytest.param(
            ["Iris", "--runner", "SparkRunner"],
            2,
            "'SparkRunner' is not one of 'DirectRunner', 'DataflowRunner'",
            id="bad-runner",
        ),
    ],
)
def test_errors_are_one_clear_line_and_a_non_zero_exit(
    invoke: Callable[..., Result], rows: Path, tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    model, *rest = args
    (tmp_path / "a-directory").mkdir()
    placeholders = {"{missing}": str(tmp_path / "missing-*.jsonl"), "{directory}": str(tmp_path / "a-directory")}
    rest = [placeholders.get(arg, arg) for arg in rest]
    if "--input" not in rest:
        rest = ["--input", str(rows), *rest]

    result = invoke(model, *rest, "--output", str(tmp_path / "out" / "scores"))

    assert result.exit_code == status, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["input", "output"])
def test_gs_paths_without_google_credentials_fail_at_once(
    invoke: Callable[..., Result], rows: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Beam would retry its own credential lookup for two minutes, logging tracebacks."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no application-default login here
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # nor a metadata server
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    paths = {"input": str(rows), "output": str(tmp_path / "out" / "scores")}
    paths[where] = f"gs://some-bucket/{where}"

    started = time.monotonic()
    result = invoke("Iris", "--input", paths["input"], "--output", paths["output"])

    assert result.exit_code == 1, result.output
    assert f"no Google credentials to read or write gs://some-bucket/{where}: run `gcloud auth" in result.output
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists()


def _two_gzip_members(data: bytes) -> bytes:
    middle = data.index(b"\n", len(data) // 2) + 1
    return gzip.compress(data[:middle]) + gzip.compress(data[middle:])


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        pytest.param("rows.jsonl.gz", gzip.compress, id="gzip"),
        pytest.param("rows.jsonl.bz2", bz2.compress, id="bzip2"),
        pytest.param("rows.jsonl.gz", _two_gzip_members, id="gzip-two-members"),
    ],
)
def test_a_compressed_input_scores_as_the_plain_file_does(
    invoke: Callable[..., Result], rows: Path, tmp_path: Path, name: str, compress: Callable[[bytes], bytes]
) -> None:
    packed = tmp_path / "packed" / name
    packed.parent.mkdir()
    packed.write_bytes(compress(rows.read_bytes()))

    plain = invoke("Iris", "--input", str(rows), "--output", str(tmp_path / "plain" / "iris"), "--key", "id")
    result = invoke("Iris", "--input", str(packed), "--output", str(tmp_path / "out" / "iris"), "--key", "id")

    assert plain.exit_code == 0, plain.output
    assert result.exit_code == 0, result.output
    assert "Iris: 5 rows scored, 0 in the dead-letter output" in result.stdout
    assert _by_key(read_shards(tmp_path / "out" / "iris")) == _by_key(read_shards(tmp_path / "plain" / "iris"))


def _by_key(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return sorted(records, key=lambda record: str(record["key"]))


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        pytest.param(
            "rows.jsonl.gz",
            lambda data: random.Random(7).randbytes(2000),  # noqa: S311 - fixed junk, not a secret
            "is not readable gzip data: Error -3 while decompressing data: incorrect header check",
            id="corrupt-gzip",
        ),
        pytest.param(
            "rows.jsonl.gz",
            lambda data: _half(gzip.compress(data)),
            "is cut short: its gzip data ends before the end of its compressed stream",
            id="truncated-gzip",
        ),
        pytest.param(
            "rows.jsonl.bz2",
            lambda data: _half(bz2.compress(data)),
            "is cut short: its bzip2 data ends before the end of its compressed stream",
            id="truncated-bzip2",
        ),
        pytest.param(
            "rows.jsonl.gz",
            lambda data: _two_gzip_members(data)[:-10],
            "is cut short: its gzip data ends before the end of its compressed stream",
            id="second-gzip-member-truncated",
        ),
        pytest.param("rows.jsonl.gz", lambda data: b"", "is empty: an empty file is no gzip data", id="empty-gzip"),
    ],
)
def test_a_compressed_input_that_does_not_decompress_whole_stops_the_run_naming_it(
    invoke: Callable[..., Result], tmp_path: Path, name: str, damage: Callable[[bytes], bytes], message: str
) -> None:
    # Enough rows that half the file holds whole lines: without the check Beam scores those and exits 0.
    data = "".join(json.dumps({"id": index, **IRIS_ROW}) + "\n" for index in range(400)).encode()
    damaged = tmp_path / "in" / name
    damaged.parent.mkdir()
    damaged.write_bytes(damage(data))

    result = invoke("Iris", "--input", str(damaged), "--output", str(tmp_path / "out" / "iris"), "--key", "id")

    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [
        "checking that 1 compressed file(s) decompress to their end",
        f"Error: cannot read --input {damaged}: {damaged} {message}",
    ]
    assert not (tmp_path / "out").exists()


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        pytest.param(".gz", gzip.compress, id="gzip"),
        pytest.param(".bz2", bz2.compress, id="bzip2"),
        pytest.param(".deflate", zlib.compress, id="deflate"),
        pytest.param(".xz", lzma.compress, id="xz"),
        pytest.param(".lzma", lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE), id="lzma"),
        pytest.param(".zst", _zstd, id="zstd"),
    ],
)
def test_every_compression_beam_reads_is_checked_to_its_end(
    tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    from apache_beam.io.filesystems import FileSystems

    from serving.offline.inputs import UnreadableInput, check_decompresses

    data = "".join(json.dumps({"id": index, **IRIS_ROW}) + "\n" for index in range(400)).encode()
    whole, cut = tmp_path / f"whole.jsonl{suffix}", tmp_path / f"cut.jsonl{suffix}"
    whole.write_bytes(compress(data))
    cut.write_bytes(_half(compress(data)))

    check_decompresses(str(whole))
    with FileSystems.open(str(whole)) as stream:  # the same file is what Beam reads, decompressed by its suffix
        assert stream.read() == data
    with pytest.raises(UnreadableInput, match="is cut short"):
        check_decompresses(str(cut))


def test_a_model_whose_setup_fails_stops_the_run_with_the_reason(
    make_app: Callable[..., Flask], tmp_path: Path, rows: Path
) -> None:
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / "broken.py").write_text(
        'NAME = "Broken"\nINPUT_SCHEMA = {}\n\ndef setup():\n    raise OSError("weights.bin is corrupt")\n\n'
        "def predict(model, payload):\n    return 1\n"
    )
    app = make_app(model_loading="lazy", handlers_dir=handlers)

    result = app.test_cli_runner().invoke(
        args=["score", "Broken", "--input", str(rows), "--output", str(tmp_path / "o")]
    )

    assert result.exit_code == 1
    assert "setup() raised OSError: weights.bin is corrupt" in result.output


@pytest.mark.e2e
def test_a_local_run_end_to_end_in_a_fresh_process(tmp_path: Path) -> None:
    source = tmp_path / "in" / "part-1.jsonl"
    source.parent.mkdir()
    lines = [json.dumps({"id": f"a{index}", **IRIS_ROW}) for index in range(300)]
    lines[7] = '{"id": "broken", "sepal_length": '
    lines[9] = json.dumps({"id": "neg", **IRIS_ROW, "petal_width": -1})
    source.write_text("\n".join(lines) + "\n")
    (tmp_path / "in" / "part-2.jsonl").write_bytes(
        b'{"id": "latin1", "name": "caf\xe9"}\n' + json.dumps({"id": "b0", **IRIS_ROW}).encode() + b"\n"
    )
    out = tmp_path / "out" / "iris"

    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "main",
            "score",
            "Iris",
            "--input",
            str(tmp_path / "in" / "*.jsonl"),
            "--output",
            str(out),
            "--key",
            "id",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "MODEL_LOADING": "lazy", "LOG_FORMAT": "text"},
    )

    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr
    assert "scoring Iris on 2 file(s) with the DirectRunner" in process.stderr
    assert "Iris: 299 rows scored, 3 in the dead-letter output" in process.stdout
    results = read_shards(out)
    assert sorted(r["key"] for r in results) == sorted(
        [f"a{index}" for index in range(300) if index not in (7, 9)] + ["b0"]
    )
    assert {r["model_version"] for r in results} == {"1.0.0"}
    assert {r["result"]["label"] for r in results} == {"setosa"}
    errors = {e["line"][:14]: e["error"] for e in read_shards(out.parent / "iris.errors")}
    assert errors['{"id": "broken'].startswith("not JSON")
    assert errors['{"id": "neg", '] == "invalid input at $.petal_width: -1 is less than or equal to the minimum of 0"
    assert errors['{"id": "latin1'].startswith("not UTF-8 text: invalid continuation byte")


def test_local_runs_report_progress_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from serving.offline import pipeline

    monkeypatch.setattr(pipeline, "_PROGRESS_EVERY_S", 0.0)
    stream = io.StringIO()
    progress = pipeline._Progress("Iris", stream)
    progress.setup()

    passed = [line for index in range(3) for line in progress.process(f"row {index}")]

    assert passed == ["row 0", "row 1", "row 2"]
    assert stream.getvalue().splitlines()[-1].startswith("Iris: 3 rows scored (")


def test_a_local_run_of_the_command_shows_progress_on_stderr(
    invoke: Callable[..., Result], rows: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.offline import pipeline

    monkeypatch.setattr(pipeline, "_PROGRESS_EVERY_S", 0.0)

    result = invoke("Iris", "--input", str(rows), "--output", str(tmp_path / "out" / "iris"), "--key", "id")

    assert result.exit_code == 0, result.output
    assert "Iris: 5 rows scored, 0 in the dead-letter output" in result.stdout
    assert any(line.startswith("Iris: ") and " rows scored (" in line for line in result.stderr.splitlines())
    assert len(read_shards(tmp_path / "out" / "iris")) == 5


@pytest.mark.parametrize(
    ("flags", "setup_file"),
    [
        pytest.param([], "setup.py", id="nothing-given-ships-setup-py"),
        pytest.param(["--setup_file=/elsewhere/setup.py"], "/elsewhere/setup.py", id="own-setup-file-kept"),
        pytest.param(["--sdk_container_image=gcr.io/p/beam:1"], None, id="container-image-kept"),
    ],
)
def test_remote_runs_ship_the_project_unless_told_how(flags: list[str], setup_file: str | None) -> None:
    from apache_beam.options.pipeline_options import SetupOptions

    from serving.offline.options import pipeline_options, ship_project

    options = pipeline_options(["--runner=DataflowRunner", *flags])

    ship_project(options)

    found = options.view_as(SetupOptions).setup_file
    expected = str(PROJECT_ROOT / "setup.py") if setup_file == "setup.py" else setup_file
    assert found == expected
