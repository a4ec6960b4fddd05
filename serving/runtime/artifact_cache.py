"""A model's artifacts as a local directory, downloaded once per instance, with their digest.

`ArtifactCache.fetch(source)` gives `setup(artifacts)` its directory:

- a local directory is used where it is; a local file is linked into a directory of its
  own in the cache, so `setup` always receives a directory;
- Cloud Storage objects are listed, and their names and generations make the digest;
  the directory `<cache>/gcs-<first 32 hex digits of the digest>` is filled once, under a lock file, and a
  `.complete` marker written after the last rename says it is whole. So gunicorn's
  master (eager loading, before the fork) or the first worker (lazy loading) downloads,
  and every other process of the instance finds the marker and reads the same files; a
  process that died mid-download leaves no marker, and the next one starts over.

The digest is a sha256 in hex: of the objects' `gs://` names and generations, or of a
local source's file names and contents. `FetchedArtifacts.short_digest` (its first 12
characters) is what the served version shows; a cache directory is named with its first
`DIRECTORY_DIGEST_LENGTH` (32 hex digits, 128 bits: no two sources meet by chance, and
the paths stay short).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from serving.config.artifact_uris import ArtifactSource, CloudStorageSource, LocalSource
from serving.config.artifacts_settings import DEFAULT_ARTIFACTS_CACHE_DIR
from serving.runtime.cloud_storage import ArtifactFetchError, create_client, digest_of, download, list_objects

log = logging.getLogger("serving.runtime.artifact_cache")

SHORT_DIGEST_LENGTH = 12
# /tmp by name, not $TMPDIR: it is App Engine's only writable directory, and memory-backed
# and private to the instance on App Engine and Cloud Run (the directory is checked to be
# this user's alone before use; see `_check_private`).
# Hex digits of the digest in a cache directory's name (`gcs-<32 hex>`, `local-<32 hex>`).
DIRECTORY_DIGEST_LENGTH = 32
# A request to Cloud Storage that stays silent this long is retried (within the timeout).
_MAX_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FetchedArtifacts:
    """A model's artifacts on local disk: where, from where, and their digest."""

    uri: str
    path: Path
    digest: str

    @property
    def short_digest(self) -> str:
        return self.digest[:SHORT_DIGEST_LENGTH]


class ArtifactCache:
    """Fetches artifacts into `directory` (ARTIFACTS_CACHE_DIR), once per instance."""

    def __init__(
        self,
        directory: Path = DEFAULT_ARTIFACTS_CACHE_DIR,
        *,
        timeout_s: float = 300.0,
        workers: int = 8,
        emulator_host: str | None = None,
    ) -> None:
        self.directory = directory
        self.timeout_s = timeout_s
        self.workers = workers
        self.emulator_host = emulator_host

    def fetch(self, source: ArtifactSource) -> FetchedArtifacts:
        """The artifacts `source` names, on local disk; `ArtifactFetchError` naming the URI when they cannot be."""
        if isinstance(source, LocalSource):
            return self._local(source)
        return self._cloud_storage(source)

    def _local(self, source: LocalSource) -> FetchedArtifacts:
        path = source.path
        try:
            if path.is_dir():
                return FetchedArtifacts(source.uri, path, local_digest(path))
            if not path.is_file():
                raise ArtifactFetchError(source.uri, "no such file or directory")
            digest = local_digest(path)
            target = self.directory / f"local-{digest[:DIRECTORY_DIGEST_LENGTH]}"
            self._fill_once(source.uri, target, lambda directory: (directory / path.name).symlink_to(path))
            return FetchedArtifacts(source.uri, target, digest)
        except OSError as exc:
            raise ArtifactFetchError(source.uri, f"{exc.__class__.__name__}: {exc}") from exc

    def _cloud_storage(self, source: CloudStorageSource) -> FetchedArtifacts:
        from google.cloud.storage.retry import DEFAULT_RETRY

        retry = DEFAULT_RETRY.with_timeout(self.timeout_s)
        request_timeout = min(_MAX_REQUEST_TIMEOUT_S, self.timeout_s)
        started = time.perf_counter()
        log.info("listing artifacts %s", source.uri, extra={"artifacts": source.uri})
        client = create_client(self.emulator_host)
        try:
            objects = list_objects(client, source, retry, request_timeout, self.timeout_s)
            digest = digest_of(source, objects)
            target = self.directory / f"gcs-{digest[:DIRECTORY_DIGEST_LENGTH]}"

            def fill(directory: Path) -> None:
                download(
                    client,
                    source,
                    objects,
                    directory,
                    retry=retry,
                    timeout=request_timeout,
                    budget_s=self.timeout_s,
                    workers=self.workers,
                )
                log.info(
                    "downloaded artifacts %s: %d objects, %d bytes in %.3f s",
                    source.uri,
                    len(objects),
                    sum(obj.size for obj in objects),
                    time.perf_counter() - started,
                    extra={"artifacts": source.uri, "artifacts_digest": digest},
                )

            try:
                self._fill_once(source.uri, target, fill)
            except OSError as exc:
                raise ArtifactFetchError(
                    source.uri, f"cannot write to ARTIFACTS_CACHE_DIR={str(self.directory)!r}: {exc}"
                ) from exc
        finally:
            client.close()
        return FetchedArtifacts(source.uri, target, digest)

    def _fill_once(self, uri: str, target: Path, fill: Callable[[Path], None]) -> None:
        """Make `target` whole with `fill` unless a process of this instance already has."""
        self._check_private(uri)
        marker = target.with_name(target.name + ".complete")
        if marker.exists():  # written last, after every rename: safe to read without the lock
            log.info("artifacts %s found in the cache (%s)", uri, target, extra={"artifacts": uri})
            return
        with FileLock(target.with_name(target.name + ".lock")):
            if marker.exists():  # another process filled it while this one waited
                log.info("artifacts %s found in the cache (%s)", uri, target, extra={"artifacts": uri})
                return
            if target.exists():  # a process died mid-download: start over
                shutil.rmtree(target)
            target.mkdir()
            try:
                fill(target)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)  # never leave half of it behind
                raise
            partial = marker.with_name(marker.name + f".{os.getpid()}")
            partial.write_text(json.dumps({"uri": uri, "pid": os.getpid(), "time": time.time()}))
            os.replace(partial, marker)

    def _check_private(self, uri: str) -> None:
        """Create the cache directory for this user alone, and refuse one that others can write.

        Whatever is in it is served once its marker exists: on a machine shared with other
        users (not App Engine's or Cloud Run's private /tmp), a directory someone else made
        under the default path could hold a model of theirs.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = self.directory.stat()
        if status.st_uid != os.getuid() or status.st_mode & 0o022:
            raise ArtifactFetchError(
                uri,
                f"ARTIFACTS_CACHE_DIR={str(self.directory)!r} belongs to another user or others may write to it; "
                "set ARTIFACTS_CACHE_DIR to a directory of this user's",
            )


def local_digest(path: Path) -> str:
    """sha256 (hex) of the names and contents of the files at `path` (hidden files and caches skipped)."""
    outer = hashlib.sha256()
    if path.is_file():
        files = [(path.name, path)]
    else:
        files = sorted(
            (str(file.relative_to(path)), file)
            for file in path.rglob("*")
            if file.is_file()
            and not any(part.startswith(".") or part == "__pycache__" for part in file.relative_to(path).parts)
        )
    for name, file in files:
        with file.open("rb") as handle:
            inner = hashlib.file_digest(handle, "sha256").hexdigest()
        outer.update(f"{name}\0{inner}\n".encode())
    return outer.hexdigest()
