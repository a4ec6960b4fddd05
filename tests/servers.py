"""Starting real server processes on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of `GET url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@dataclass
class ServerProcess:
    """A running server: its base URL, process, and the log file it writes."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        """Everything the process has written so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig`, wait for the exit, and return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without settings that would leak into a server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAE_", "K_", "FUNCTION_", "AIP_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("LOG_FORMAT", "json")
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_server(
    command: Sequence[str],
    *,
    port: int,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/readyz",
    startup_timeout: float = 60.0,
    cwd: Path = PROJECT_ROOT,
) -> Iterator[ServerProcess]:
    """Run `command` until `ready_path` answers 200 on `port`; stop it on exit."""
    full_env = base_env(env)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(list(command), cwd=cwd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path, port, full_env)
    try:
        deadline = time.monotonic() + startup_timeout
        while http_status(server.url + ready_path) != 200:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{server.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} not ready after {startup_timeout} s:\n{server.log()[-4000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def gunicorn_command(*extra: str) -> list[str]:
    """gunicorn started the way app.yaml's entrypoint starts it."""
    return [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", *extra, "main:app"]


def run_python(code: str, timeout: float, args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run `code` (with `args` as sys.argv[1:]) in a fresh interpreter from the project root."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
