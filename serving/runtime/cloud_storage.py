"""Reading a model's objects from Cloud Storage: list, download in parallel, verify.

google-cloud-storage does the work: its client (Application Default Credentials, or
anonymous access), its retry policy for transient errors (429, 5xx, dropped
connections) with exponential backoff bounded by `ARTIFACTS_TIMEOUT_S`, and its transfer
manager for parallel downloads. Each object is downloaded at the generation the listing
saw, to a temporary name, checked against the crc32c (else md5) that Cloud Storage
reported for it, and only then renamed to its real name. Every failure becomes an
`ArtifactFetchError` whose message says what went wrong in terms of the URI.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google_crc32c

from serving.config.artifact_uris import CloudStorageSource, relative_object_path
from serving.kit import ArtifactError

if TYPE_CHECKING:
    from google.cloud.storage import Client

log = logging.getLogger("serving.runtime.cloud_storage")

READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
_CHUNK = 1024 * 1024
_CORRUPTION = re.compile(r"indicated an? (\w+) checksum of:\s+(\S+)\s+but the actual \w+ checksum[^:]*:\s+(\S+)")


class ArtifactFetchError(ArtifactError):
    """A model's artifacts cannot be fetched; the message names the URI and what went wrong.

    A kind of `serving.kit.ArtifactError` (a model's files missing or corrupt), raised
    before `setup` rather than by it.
    """

    def __init__(self, uri: str, problem: str) -> None:
        super().__init__(f"artifacts {uri}: {problem}")
        self.uri = uri
        self.problem = problem


@dataclass(frozen=True)
class RemoteObject:
    """One object as the listing reported it."""

    name: str
    relative: str  # its path under the artifacts directory
    generation: int
    size: int
    crc32c: str | None  # base64, as Cloud Storage reports it
    md5: str | None


def create_client(emulator_host: str | None) -> Client:
    """A storage client: anonymous for an emulator, else Application Default Credentials.

    Without any credentials (a laptop that never ran `gcloud auth application-default
    login`), the client is anonymous, which can read public buckets only.
    """
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.storage import Client

    if emulator_host is not None:
        return Client(
            project="<none>",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator_host},
        )
    try:
        credentials, project = google.auth.default(scopes=[READ_ONLY_SCOPE])
    except DefaultCredentialsError:
        log.warning("no Application Default Credentials: reading Cloud Storage anonymously (public buckets only)")
        return Client.create_anonymous_client()
    return Client(project=project or "<none>", credentials=credentials)


def list_objects(
    client: Client, source: CloudStorageSource, retry: Any, timeout: float, budget_s: float
) -> list[RemoteObject]:
    """The objects `source` names, with their generations and checksums."""
    try:
        if not source.is_prefix:
            blob = client.bucket(source.bucket).get_blob(source.name, retry=retry, timeout=timeout)
            if blob is not None:
                return [_remote(blob, "")]
        prefix = source.name if source.is_prefix else source.name + "/"
        blobs = client.list_blobs(source.bucket, prefix=prefix or None, retry=retry, timeout=timeout)
        found = [_remote(blob, prefix) for blob in blobs if not blob.name.endswith("/")]
    except ValueError as exc:  # an object name that cannot be a local file
        raise ArtifactFetchError(source.uri, str(exc)) from None
    except Exception as exc:
        from google.api_core.exceptions import NotFound

        if isinstance(exc, NotFound):  # listing a bucket that does not exist
            raise ArtifactFetchError(source.uri, f"bucket {source.bucket} not found (404)") from exc
        raise ArtifactFetchError(source.uri, describe_error(exc, source, budget_s)) from exc
    if not found:
        where = f"no object {source.uri} and none under gs://{source.bucket}/{prefix}"
        raise ArtifactFetchError(source.uri, where if not source.is_prefix else f"no objects under {source.uri}")
    return found


def _remote(blob: Any, prefix: str) -> RemoteObject:
    return RemoteObject(
        name=blob.name,
        relative=str(relative_object_path(blob.name, prefix)),
        generation=int(blob.generation),
        size=int(blob.size or 0),
        crc32c=blob.crc32c,
        md5=blob.md5_hash,
    )


def digest_of(source: CloudStorageSource, objects: Iterable[RemoteObject]) -> str:
    """sha256 (hex) of the objects' names and generations: the same objects, the same digest."""
    lines = sorted(f"gs://{source.bucket}/{obj.name}#{obj.generation}\n" for obj in objects)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def download(
    client: Client,
    source: CloudStorageSource,
    objects: list[RemoteObject],
    directory: Path,
    *,
    retry: Any,
    timeout: float,
    budget_s: float,
    workers: int,
) -> None:
    """Download `objects` into `directory`, each verified, in parallel; `ArtifactFetchError` on any failure."""
    from google.cloud.storage import transfer_manager

    bucket = client.bucket(source.bucket)
    pairs: list[tuple[Any, str]] = []
    for obj in objects:
        final = directory / obj.relative
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        pairs.append((bucket.blob(obj.name, generation=obj.generation), str(temporary)))
    # Threads, not processes: this may run in gunicorn's master before it forks, and the
    # work is network I/O, which releases the GIL.
    results = transfer_manager.download_many(
        pairs,
        download_kwargs={"retry": retry, "timeout": timeout, "checksum": "auto"},
        worker_type=transfer_manager.THREAD,
        max_workers=workers,
        raise_exception=False,
    )
    for obj, (_, part), result in zip(objects, pairs, results, strict=True):
        object_uri = f"gs://{source.bucket}/{obj.name}"
        if isinstance(result, BaseException):
            Path(part).unlink(missing_ok=True)
            raise ArtifactFetchError(
                source.uri, f"{object_uri}: {describe_error(result, source, budget_s)}"
            ) from result
        problem = checksum_problem(Path(part), obj)
        if problem is not None:
            Path(part).unlink(missing_ok=True)
            raise ArtifactFetchError(source.uri, f"{object_uri}: {problem}")
        os.replace(part, directory / obj.relative)


def checksum_problem(path: Path, obj: RemoteObject) -> str | None:
    """Why the downloaded file does not match what Cloud Storage reported, or None when it does."""
    if obj.crc32c is not None:
        crc = 0
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                crc = google_crc32c.extend(crc, chunk)
        got = base64.b64encode(crc.to_bytes(4, "big")).decode()
        return None if got == obj.crc32c else f"checksum mismatch: crc32c is {got}, Cloud Storage reports {obj.crc32c}"
    if obj.md5 is not None:
        with path.open("rb") as file:
            got = base64.b64encode(hashlib.file_digest(file, "md5").digest()).decode()
        return None if got == obj.md5 else f"checksum mismatch: md5 is {got}, Cloud Storage reports {obj.md5}"
    return "Cloud Storage reports neither a crc32c nor an md5 to verify it against"


def describe_error(exc: BaseException, source: CloudStorageSource, budget_s: float) -> str:
    """What `exc` means for someone reading `/readyz`: not found, denied, corrupt, unreachable."""
    from google.api_core import exceptions as api
    from google.cloud.storage.exceptions import DataCorruption

    if isinstance(exc, DataCorruption):
        # The library's message spreads the two checksums over several lines.
        found = _CORRUPTION.search(str(exc))
        if found is None:
            return f"checksum mismatch while downloading ({_first_line(exc)})"
        kind, reported, actual = found.groups()
        return f"checksum mismatch: {kind} is {actual}, Cloud Storage reports {reported}"
    if isinstance(exc, api.NotFound):
        return f"not found (404): {_first_line(exc)}"
    if isinstance(exc, api.Forbidden):
        return (
            f"access denied (403): the service account needs roles/storage.objectViewer on bucket "
            f"{source.bucket} ({_first_line(exc)})"
        )
    if isinstance(exc, api.Unauthorized):
        return f"not authenticated (401): {_first_line(exc)}"
    if isinstance(exc, api.RetryError):
        cause = _root_cause(exc.cause if exc.cause is not None else exc)
        last = f"{cause.__class__.__name__}: {_first_line(cause)}"
        # google-api-core stops as soon as the next backoff would pass the budget.
        retried = f"retried with backoff, ARTIFACTS_TIMEOUT_S={budget_s:g}"
        return f"Cloud Storage could not be reached ({retried}; last error: {last})"
    if isinstance(exc, api.GoogleAPICallError):
        return f"{exc.code} {_first_line(exc)}"
    return f"{exc.__class__.__name__}: {_first_line(exc)}"


def _root_cause(exc: BaseException) -> BaseException:
    # requests wraps urllib3, which wraps the socket's error: the innermost one says it
    # plainly ("Connection refused", "timed out").
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__
