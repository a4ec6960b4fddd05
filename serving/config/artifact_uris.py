"""Where a model's files are: a Cloud Storage URI or a local path, parsed and checked.

A handler's `ARTIFACTS`, the `MODEL_ARTIFACTS` setting and Vertex AI's `AIP_STORAGE_URI`
all name one of:

- `gs://bucket/prefix/` (ends with `/`): every object under the prefix, by their names
  relative to it;
- `gs://bucket/path/model.onnx`: that one object; when no object has exactly that name,
  the objects under `path/model.onnx/` (as `gcloud storage cp -r` reads it), so Vertex
  AI's `AIP_STORAGE_URI` works with and without its trailing slash;
- a local path, absolute or relative to the project root (a Cloud Storage FUSE mount is
  just a path): a directory, or one file.

Parsing is pure: nothing is read or fetched here (see `serving.runtime.artifact_cache`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from serving.config.fields import PROJECT_ROOT

# Cloud Storage bucket names: 3-63 characters per dot-separated part (222 in all),
# lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]{1,220})[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CloudStorageSource:
    """Objects in a Cloud Storage bucket: one object, or every object under a prefix."""

    bucket: str
    # The object name, or the prefix ("" for the whole bucket, else ending with "/").
    name: str

    @property
    def is_prefix(self) -> bool:
        """True when the URI names a prefix (ends with `/`) rather than maybe one object."""
        return self.name == "" or self.name.endswith("/")

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class LocalSource:
    """A local directory or file (absolute; relative paths are resolved against the project root)."""

    path: Path

    @property
    def uri(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.uri


ArtifactSource = CloudStorageSource | LocalSource


def parse_artifact_uri(raw: str, *, root: Path = PROJECT_ROOT, directory: bool = False) -> ArtifactSource:
    """The source `raw` names; `ValueError` saying what was expected when it names none.

    `directory=True` reads a `gs://` URI as a prefix even without its trailing slash
    (Vertex AI's `AIP_STORAGE_URI` always names a directory).
    """
    value = raw.strip()
    if not value:
        raise ValueError("expected gs://BUCKET/PATH or a local path, found an empty value")
    if _CONTROL.search(value):
        raise ValueError("expected gs://BUCKET/PATH or a local path, found control characters")
    if "://" not in value:
        path = Path(value).expanduser()
        return LocalSource(path if path.is_absolute() else root / path)
    scheme, _, rest = value.partition("://")
    if scheme != "gs":
        raise ValueError(f"expected gs://BUCKET/PATH or a local path, found a {scheme}:// URI")
    bucket, _, name = rest.partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket or any(len(part) > 63 for part in bucket.split(".")):
        raise ValueError(f"expected a Cloud Storage bucket name after gs://, found {bucket!r}")
    if name:
        parts = name.rstrip("/").split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"expected an object name or prefix without empty, '.' or '..' parts, found {name!r}")
    if directory and name and not name.endswith("/"):
        name += "/"
    return CloudStorageSource(bucket, name)


def parse_model_artifacts(raw: str) -> tuple[tuple[str, ArtifactSource], ...]:
    """`Name=uri,Name2=uri2` as (name, source) pairs; `ValueError` naming the bad pair."""
    pairs: list[tuple[str, ArtifactSource]] = []
    seen: set[str] = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, uri = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"expected Name=uri pairs separated by commas, found {item!r}")
        if name in seen:
            raise ValueError(f"model {name!r} is named twice")
        seen.add(name)
        try:
            pairs.append((name, parse_artifact_uri(uri)))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return tuple(pairs)


def parse_storage_directory(raw: str) -> ArtifactSource | None:
    """Vertex AI's `AIP_STORAGE_URI`: a `gs://` directory, with or without its trailing slash."""
    if not raw.strip():
        return None  # set but empty reads as unset, as for Vertex AI's other variables
    source = parse_artifact_uri(raw, directory=True)
    if not isinstance(source, CloudStorageSource):
        raise ValueError("expected a gs://BUCKET/PATH URI")
    return source


def relative_object_path(name: str, prefix: str) -> PurePosixPath:
    """Where the object `name` goes under the artifacts directory; `ValueError` if it cannot.

    Object names are free-form: one with `..`, `.` or empty parts would write outside the
    directory or collide, so it is refused rather than mapped.
    """
    relative = name[len(prefix) :] if prefix and name.startswith(prefix) else name.rsplit("/", 1)[-1]
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts) or _CONTROL.search(relative):
        raise ValueError(f"object {name!r} cannot be stored as a local file (empty, '.' or '..' parts)")
    return PurePosixPath(relative)
