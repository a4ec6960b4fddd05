"""A Cloud Storage API emulator on 127.0.0.1, for the artifact tests.

The emulator is PyPI's `gcp-storage-emulator` (pinned in requirements-test.txt): a real
HTTP server speaking Cloud Storage's JSON API, which computes crc32c and md5 on upload,
gives each upload a new generation, sends `x-goog-hash` on downloads, keeps each object's
bytes in a file under its data directory (so a test can corrupt them behind its back),
and logs one line per request (so a test can count downloads).
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import VENV_BIN, free_port, http_status

EMULATOR_BIN = VENV_BIN / "gcp-storage-emulator"


def emulator_installed() -> bool:
    """True when gcp-storage-emulator (requirements-test.txt) is installed in this venv."""
    return EMULATOR_BIN.exists() and importlib.util.find_spec("gcp_storage_emulator") is not None


@dataclass
class StorageEmulator:
    """A running emulator: its URL, data directory and request log."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def client(self) -> Any:
        """A google-cloud-storage client of this emulator, as the tests' uploader."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )

    def upload(self, bucket: str, objects: dict[str, bytes]) -> dict[str, int]:
        """Create `bucket` if needed and upload `objects`; their new generations by name."""
        client = self.client()
        try:
            target = client.bucket(bucket)
            if not target.exists():
                target = client.create_bucket(bucket)
            generations = {}
            for name, data in objects.items():
                blob = target.blob(name)
                blob.upload_from_string(data)
                generations[name] = int(blob.generation)
            return generations
        finally:
            client.close()

    def stored_file(self, bucket: str, name: str) -> Path:
        """Where the emulator keeps the bytes of `bucket/name`."""
        return self.data_dir / ".cloudstorage" / bucket / name

    def downloads(self, bucket: str) -> list[str]:
        """The object download requests the emulator has answered for `bucket`, in order."""
        marker = f"GET /download/storage/v1/b/{bucket}/o/"
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if marker in line]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            if sig != signal.SIGSTOP:
                self.process.wait(10)


@contextlib.contextmanager
def running_storage_emulator(directory: Path, port: int | None = None) -> Iterator[StorageEmulator]:
    """Start gcp-storage-emulator on `port` (default a free one), storing under `directory`; stop it on exit.

    The objects stay in `directory` after it stops: another emulator started on the same
    directory serves them again.
    """
    port = port or free_port()
    data_dir = directory / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"emulator-{port}-{time.monotonic_ns()}.log"
    command = [str(EMULATOR_BIN), "-d", str(data_dir), "start", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    emulator = StorageEmulator(f"http://127.0.0.1:{port}", process, data_dir, log_path)
    try:
        deadline = time.monotonic() + 30
        while http_status(f"{emulator.url}/storage/v1/b?project=test") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gcp-storage-emulator did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield emulator
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # in case a test paused it
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
