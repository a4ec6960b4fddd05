"""A model's files checked against their manifest (`artifact.json`), as a model loads them at serve time.

A model's training command (`models/artifact_writer.py`) writes, into the model's directory:

- the fitted scikit-learn estimator, saved with `skops.io` (never pickle: loading a
  pickle runs whatever code the file names). It is the source of truth, used for
  training, tests and the benchmark's baseline; `load_artifact` reads it.
- its *serving form*: the same estimator converted to ONNX, which the server runs with
  ONNX Runtime (`serving.kit.OnnxModel`), so it never imports scikit-learn, scipy or
  skops. `load_serving_bytes` reads it.
- `artifact.json`, the manifest: sha256 and size of both files, and how they were made.

Both loaders refuse a file whose sha256 differs from the manifest's with an
`ArtifactError` that names the file and what is wrong; the server shows that message as
the model's failed-readiness reason. Part of `serving.kit`, the public surface for
model authors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_NAME = "artifact.json"


class ArtifactError(RuntimeError):
    """A model's files are missing, corrupt, replaced, or hold types they must not; the message names the file."""


@dataclass(frozen=True)
class ServingFile:
    """What `artifact.json` records about a model's serving form (under `"serving"`)."""

    artifact: str  # file name, in the manifest's directory
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Manifest:
    """What `artifact.json` records about one model's files."""

    artifact: str  # the skops file's name, in the manifest's directory
    sha256: str
    size_bytes: int
    trusted_types: tuple[str, ...]  # types skops does not trust by default, reviewed by us
    held_out_accuracy: float
    seed: int
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    serving: ServingFile | None = None  # absent from manifests written before serving forms

    def to_json(self) -> str:
        """Stable JSON text (sorted keys, trailing newline), so rewrites diff cleanly."""
        data = asdict(self)
        data["trusted_types"] = list(self.trusted_types)
        if self.serving is None:
            del data["serving"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def display_path(path: Path) -> str:
    """`path` relative to the project root when inside it, so messages show no host paths."""
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return path.name


def sha256_hex(data: bytes) -> str:
    """The sha256 of `data` in hex, as the manifest records it."""
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, or an `ArtifactError` that says what is wrong with it."""
    name = display_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{name}: manifest not found; run the model's training command") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{name}: manifest is unreadable ({exc.__class__.__name__})") from None
    try:
        serving = data.get("serving")
        return Manifest(
            artifact=str(data["artifact"]),
            sha256=str(data["sha256"]),
            size_bytes=int(data["size_bytes"]),
            trusted_types=tuple(str(t) for t in data["trusted_types"]),
            held_out_accuracy=float(data["held_out_accuracy"]),
            seed=int(data["seed"]),
            training=dict(data.get("training", {})),
            versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
            serving=(
                ServingFile(str(serving["artifact"]), str(serving["sha256"]), int(serving["size_bytes"]))
                if serving is not None
                else None
            ),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{name}: manifest lacks or mistypes a field ({exc})") from None


def load_artifact(directory: Path, filename: str, trusted_types: Collection[str]) -> Any:
    """Load `directory/filename` after checking it against `directory/artifact.json`.

    `trusted_types` is the model's allow-list in code. The manifest cannot widen it: a
    manifest travels with its artifact, so it vouches for integrity, not for trust.
    """
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    manifest = read_manifest(directory / MANIFEST_NAME)
    path = directory / filename
    name = display_path(path)
    if manifest.artifact != filename:
        raise ArtifactError(f"{name}: the manifest describes {manifest.artifact!r}, not this file")
    data = _read_verified(path, manifest.sha256)
    try:
        return skops.io.loads(data, trusted=sorted(trusted_types))
    except UntrustedTypesFoundException as exc:
        detail = str(exc).splitlines()[0]
        raise ArtifactError(f"{name}: holds types outside the model's allow-list. {detail}") from None
    except Exception as exc:  # noqa: BLE001 - skops reports a malformed file in many ways
        raise ArtifactError(f"{name}: not a loadable skops file ({exc.__class__.__name__}: {exc})") from None


def load_serving_bytes(directory: Path, filename: str) -> bytes:
    """The bytes of the serving form `directory/filename`, checked against `artifact.json`.

    Whether they hold the model they should (an ONNX graph of the right inputs and
    outputs) is the model's to check.
    """
    manifest = read_manifest(directory / MANIFEST_NAME)
    path = directory / filename
    name = display_path(path)
    if manifest.serving is None:
        raise ArtifactError(f"{name}: the manifest records no serving form; run the model's training command")
    if manifest.serving.artifact != filename:
        raise ArtifactError(f"{name}: the manifest describes {manifest.serving.artifact!r}, not this file")
    return _read_verified(path, manifest.serving.sha256)


def _read_verified(path: Path, sha256: str) -> bytes:
    """The bytes of `path`, or an `ArtifactError` if unreadable or their sha256 is not `sha256`."""
    name = display_path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{name}: artifact not found; run the model's training command") from None
    except OSError as exc:
        raise ArtifactError(f"{name}: artifact is unreadable ({exc.strerror})") from None
    digest = sha256_hex(data)
    if digest != sha256:
        raise ArtifactError(
            f"{name}: sha256 {digest[:16]}… does not match the manifest's {sha256[:16]}…; "
            "the file is corrupt or was replaced without retraining"
        )
    return data
