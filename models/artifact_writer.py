"""Writing a trained model's files: a skops file and an ONNX serving form, with a sha256 manifest.

Training-time code (a model's `train` module); the serve-time side, which reads and
verifies these files, is `serving.kit`'s (serving/kit/manifest.py), which also defines
the manifest and its `ArtifactError`.

Both files are written in a canonical form, so that retraining with the same seed and
library versions gives the same bytes.

Canonical form: `skops.io.dumps` names its array members after `id()` of the arrays, puts
those ids in its schema, and stamps every zip member with the current time. The rewrite
numbers ids and members in the (deterministic) order of the schema and uses a fixed
timestamp; the content is unchanged, so `skops.io.loads` reads it as before. skl2onnx
writes the same ONNX bytes for the same estimator, so the serving form needs no rewrite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from serving.kit import MANIFEST_NAME, ArtifactError, Manifest, ServingFile, sha256_hex

# Library versions that decide an artifact's bytes: the fitted numbers (numpy, scipy,
# scikit-learn), the file layouts (skops; skl2onnx and onnx for the serving form) and the
# deflate stream (zlib).
REPRODUCIBILITY_LIBRARIES = ("numpy", "scipy", "scikit-learn", "skops", "skl2onnx", "onnx")

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


@dataclass(frozen=True)
class ServingForm:
    """A serving form to write: its file name and its bytes (an ONNX model)."""

    filename: str
    data: bytes


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that decide an artifact's bytes."""
    versions = {name: metadata.version(name) for name in REPRODUCIBILITY_LIBRARIES}
    versions["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    versions["python"] = platform.python_version()
    return versions


def canonical_dumps(obj: Any) -> bytes:
    """`skops.io.dumps(obj)` with ids, member names and timestamps made deterministic."""
    import skops.io  # type: ignore[import-untyped]

    raw = skops.io.dumps(obj)
    with zipfile.ZipFile(io.BytesIO(raw)) as source:
        schema = json.loads(source.read("schema.json"))
        renames: dict[str, str] = {}
        _renumber(schema, ids={}, renames=renames)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as target:
            for name in source.namelist():
                content = json.dumps(schema, indent=2).encode() if name == "schema.json" else source.read(name)
                # Tree arrays are mostly zeros: deflate makes the digits forest ~8x smaller.
                target.writestr(_zip_entry(renames.get(name, name)), content, compresslevel=9)
    return buffer.getvalue()


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.create_system = 3  # Unix, whatever the host, so the header bytes match
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _renumber(node: Any, ids: dict[int, int], renames: dict[str, str]) -> None:
    """Replace skops's `id()`-based `__id__`s and member names by counters, in place."""
    if isinstance(node, list):
        for item in node:
            _renumber(item, ids, renames)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            # Start at 1: skops treats a falsy id as "not memoised".
            node[key] = ids.setdefault(value, len(ids) + 1)
        elif key == "file" and isinstance(value, str):
            suffix = Path(value).suffix
            node[key] = renames.setdefault(value, f"{len(renames) + 1:06d}{suffix}")
        else:
            _renumber(value, ids, renames)


def write_artifact(
    obj: Any,
    directory: Path,
    filename: str,
    *,
    trusted_types: Collection[str],
    held_out_accuracy: float,
    seed: int,
    training: dict[str, Any],
    serving: ServingForm | None = None,
) -> Manifest:
    """Save `obj` as `directory/filename`, `serving` beside it, and `artifact.json`.

    Fails if the saved file needs a type outside `trusted_types`: a new type must be
    reviewed and added to the model's allow-list in code, not trusted silently.
    """
    import skops.io

    data = canonical_dumps(obj)
    found = skops.io.get_untrusted_types(data=data)
    unexpected = sorted(set(found) - set(trusted_types))
    if unexpected:
        raise ArtifactError(
            f"{filename}: the fitted model needs types outside the allow-list: {', '.join(unexpected)}; "
            "review them and add them to the model's TRUSTED_TYPES"
        )
    serving_data = serving.data if serving is not None else b""
    manifest = Manifest(
        artifact=filename,
        sha256=sha256_hex(data),
        size_bytes=len(data),
        trusted_types=tuple(sorted(found)),
        held_out_accuracy=held_out_accuracy,
        seed=seed,
        training=training,
        versions=library_versions(),
        serving=(
            ServingFile(serving.filename, sha256_hex(serving_data), len(serving_data)) if serving is not None else None
        ),
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(directory / filename, data)
    if serving is not None:
        write_atomically(directory / serving.filename, serving_data)
    # The manifest last: until it is replaced, a new file fails the old manifest's sha256
    # check (the model reports itself failed) rather than loading unverified.
    write_atomically(directory / MANIFEST_NAME, manifest.to_json().encode())
    return manifest


def output_dir(prog: str, description: str, default: Path, argv: Sequence[str] | None) -> Path:
    """The `--output-dir` of a model's training command (`python -m models.<name>.train`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--output-dir", type=Path, default=default, help="where to write (default: %(default)s)")
    return Path(parser.parse_args(argv).output_dir)


def print_written(manifest: Manifest, directory: Path) -> None:
    """Tell the person training where each file went, with its size and sha256."""
    print(f"wrote {directory / manifest.artifact} ({manifest.size_bytes} bytes, sha256 {manifest.sha256})")
    if manifest.serving is not None:
        serving = manifest.serving
        print(f"wrote {directory / serving.artifact} ({serving.size_bytes} bytes, sha256 {serving.sha256})")


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    # A reader (a server starting while training runs) sees the old file or the new one,
    # never half of one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
