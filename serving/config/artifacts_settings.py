"""Settings of where models' files come from (Cloud Storage, Vertex AI) and how they run (ONNX Runtime)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from serving.config import parsers
from serving.config.artifact_uris import ArtifactSource, parse_model_artifacts, parse_storage_directory
from serving.config.fields import setting

# Under /tmp: App Engine standard's only writable place.
DEFAULT_ARTIFACTS_CACHE_DIR = Path("/tmp/model-serving-artifacts")  # noqa: S108


def emulator_url(raw: str) -> str | None:
    """`STORAGE_EMULATOR_HOST` as a URL; google-cloud-storage accepts a bare host:port too, and means http."""
    value = raw.strip().rstrip("/")
    if not value:
        return None
    if "://" not in value:
        value = f"http://{value}"
    if not re.fullmatch(r"https?://[^/\s?#]+", value):
        raise ValueError("expected http://host:port")
    return value


@dataclass(frozen=True)
class OnnxSettings:
    onnx_intra_op_threads: int = setting(
        "ONNX_INTRA_OP_THREADS",
        0,
        "Threads one ONNX Runtime operator may use, per worker process; 0: the usable cores divided by "
        "`GUNICORN_WORKERS` (at least 1), so the workers never oversubscribe the cores.",
        parsers.int_between(0, 256),
    )
    onnx_inter_op_threads: int = setting(
        "ONNX_INTER_OP_THREADS",
        1,
        "Threads running independent operators of an ONNX graph at once; 1 runs them in order "
        "(best for the small graphs served here).",
        parsers.int_between(1, 256),
    )
    onnx_spin_wait: bool = setting(
        "ONNX_SPIN_WAIT",
        False,
        "Let ONNX Runtime's pool threads spin between operators: a little lower latency for CPU "
        "that sibling workers could use.",
        parsers.parse_bool,
    )


@dataclass(frozen=True)
class ArtifactSettings:
    model_artifacts: tuple[tuple[str, ArtifactSource], ...] = setting(
        "MODEL_ARTIFACTS",
        (),
        "Where models' files are, overriding handlers' `ARTIFACTS`: `Name=uri` pairs separated by commas; a "
        "uri is `gs://bucket/prefix/`, `gs://bucket/path/file` or a local path (see docs/artifacts.md).",
        parse_model_artifacts,
    )
    aip_storage_uri: ArtifactSource | None = setting(
        "AIP_STORAGE_URI",
        None,
        "Vertex AI custom container: the model's `gs://` directory, which overrides the artifacts of the model "
        "its predict route serves. Vertex AI sets it.",
        parse_storage_directory,
    )
    artifacts_cache_dir: Path = setting(
        "ARTIFACTS_CACHE_DIR",
        DEFAULT_ARTIFACTS_CACHE_DIR,
        "Local directory where artifacts from Cloud Storage are downloaded, once per instance (under /tmp: "
        "App Engine's only writable place).",
        parsers.path,
    )
    artifacts_timeout_s: float = setting(
        "ARTIFACTS_TIMEOUT_S",
        300.0,
        "Seconds start-up keeps retrying transient Cloud Storage errors for one model's artifacts before the "
        "model fails (one request may stay silent for 60 s, or this long if shorter).",
        parsers.float_between(1, 3600),
    )
    artifacts_download_workers: int = setting(
        "ARTIFACTS_DOWNLOAD_WORKERS",
        8,
        "Objects downloaded at once (threads of google-cloud-storage's transfer manager).",
        parsers.int_between(1, 64),
    )
    storage_emulator_host: str | None = setting(
        "STORAGE_EMULATOR_HOST",
        None,
        "URL of a Cloud Storage emulator (e.g. `http://127.0.0.1:9023`), reached with anonymous credentials "
        "instead of Google's API.",
        emulator_url,
    )
