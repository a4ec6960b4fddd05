"""Resilience under load and faults, on the real gunicorn: soak, a killed worker, a database
restart, and graceful shutdown.

    python -m bench.resilience              # full size (a few minutes)
    python -m bench.resilience --smoke      # reduced size, as tests/bench/test_resilience.py runs it in CI
    python -m bench.resilience --only soak,kill-worker

Each scenario starts gunicorn with gunicorn.conf.py on a free loopback port and drives it
with closed-loop client threads (each sends its next request when the last one answered):

- soak: sustained load near saturation (one client per gunicorn thread) on the tutorial's
  model; every request must succeed, and worker memory (RSS) is read at start and end.
- kill-worker: load plus asynchronous jobs, then SIGKILL of one worker. The master must
  start a replacement; clients may see at most as many failures as that worker had
  requests in flight (one per thread); every job accepted with 202 must still succeed.
- database-restart: jobs on PostgreSQL, whose server is restarted (`pg_ctl restart -m
  fast`, which cuts every connection) while they run; every job must still succeed. The
  server is a private PostgreSQL cluster made for the run with the machine's PostgreSQL
  binaries, so no other user of the shared one is disturbed.
- graceful-shutdown: SIGTERM while requests are in flight; each must get its answer and
  gunicorn must exit within Cloud Run's 10 s.

It writes bench/RESULTS-resilience.md (the table and how it was made). Nothing here
asserts timings; tests/bench/test_resilience.py asserts the correctness figures (failures, jobs
lost, replacement, exit) at reduced size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.servers import ServerProcess, free_port, gunicorn_command, running_server  # noqa: E402

RESILIENCE_HANDLERS = PROJECT_ROOT / "tests" / "fixtures" / "handlers" / "resilience"
RESULTS = PROJECT_ROOT / "bench" / "RESULTS-resilience.md"
GREETING = json.dumps({"name": "Leo"}).encode()
JSON_HEADERS = {"Content-Type": "application/json"}


# --- load ---


@dataclass
class Outcome:
    """One request: when it started and ended (monotonic), and its status or error."""

    started: float
    ended: float
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Load:
    """Closed-loop clients sending one request after another until stopped."""

    def __init__(
        self, port: int, path: str, body: bytes, *, clients: int, keepalive: bool = True, timeout: float = 30.0
    ) -> None:
        self.port, self.path, self.body = port, path, body
        self.clients, self.keepalive, self.timeout = clients, keepalive, timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.outcomes

    def _client(self) -> None:
        headers = dict(JSON_HEADERS)
        if not self.keepalive:
            headers["Connection"] = "close"
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.monotonic()
            try:
                conn.request("POST", self.path, self.body, headers)
                response = conn.getresponse()
                response.read()
                outcome = Outcome(started, time.monotonic(), response.status)
                if not self.keepalive or response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(started, time.monotonic(), None, f"{exc.__class__.__name__}: {exc}"[:200])
                conn.close()
                conn = None
                if isinstance(exc, ConnectionRefusedError):
                    time.sleep(0.05)  # nothing listens (shutdown): do not spin
            with self._lock:
                self.outcomes.append(outcome)
        if conn is not None:
            conn.close()


def p99_ms(outcomes: list[Outcome]) -> float | None:
    """The 99th percentile latency of the successful requests, in milliseconds."""
    latencies = sorted((o.ended - o.started) * 1000 for o in outcomes if o.ok)
    if len(latencies) < 2:
        return latencies[0] if latencies else None
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


# --- processes ---


def worker_pids(master: int) -> list[int]:
    """gunicorn's worker processes: the master's children."""
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _wait(condition: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log_dir: Path, name: str) -> Iterator[ServerProcess]:
    """gunicorn as app.yaml runs it, on a free port, with `env` added."""
    port = free_port()
    merged = {"PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8", **env}
    with running_server(gunicorn_command(), port=port, log_path=log_dir / f"{name}.log", env=merged) as server:
        yield server


# --- jobs ---


def submit_jobs(port: int, count: int, seconds: float, tag: str) -> list[str]:
    """Submit `count` asynchronous Work jobs; the ids of those accepted with 202."""
    accepted = []
    for i in range(count):
        body = json.dumps({"seconds": seconds, "tag": f"{tag}-{i}"}).encode()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v1/Work", body, {**JSON_HEADERS, "Prefer": "respond-async"})
            response = conn.getresponse()
            document = json.loads(response.read() or b"{}")
            conn.close()
        except (OSError, http.client.HTTPException, ValueError):
            continue
        if response.status == 202:
            accepted.append(document["job_id"])
    return accepted


def job_states(port: int, job_ids: list[str], timeout: float) -> dict[str, str]:
    """Each job's status once every job is terminal (or `timeout` passed)."""
    states: dict[str, str] = {}

    def all_terminal() -> bool:
        for job_id in job_ids:
            if states.get(job_id) in ("succeeded", "failed", "canceled"):
                continue
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", f"/v1/jobs/{job_id}")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                states[job_id] = json.loads(body).get("status", f"http {response.status}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                states[job_id] = f"unreachable: {exc.__class__.__name__}"
        return all(states.get(j) in ("succeeded", "failed", "canceled") for j in job_ids)

    _wait(all_terminal, timeout, interval=0.5)
    return states


def _jobs_env(tmp: Path) -> dict[str, str]:
    return {
        "HANDLERS_DIR": str(RESILIENCE_HANDLERS),
        "JOBS_STORE": "sqlite",
        "JOBS_DATA_DIR": str(tmp / "jobs"),
        "JOBS_WORKERS": "2",
        "JOBS_LEASE_S": "3",
        "JOBS_POLL_INTERVAL_S": "0.1",
    }


# --- scenarios ---


@dataclass
class Result:
    """One scenario's figures; `problems` lists every broken guarantee (empty: all held)."""

    scenario: str
    size: str
    requests: int = 0
    failures: int = 0
    allowed_failures: int = 0
    p99_ms: float | None = None
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    jobs_accepted: int | None = None
    jobs_completed: int | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _count(result: Result, outcomes: list[Outcome]) -> None:
    result.requests = len(outcomes)
    result.failures = sum(not o.ok for o in outcomes)
    result.p99_ms = p99_ms(outcomes)


def soak(tmp: Path, duration_s: float, clients: int = 16) -> Result:
    """Near-saturation load on XXXModel for `duration_s`: zero failures; RSS start vs end."""
    result = Result("soak", f"{clients} clients x {duration_s:g} s")
    with gunicorn({}, tmp, "soak") as server:
        load = Load(server.port, "/v1/XXXModel", GREETING, clients=clients)
        with load:
            time.sleep(min(2.0, duration_s / 5))  # warm: every worker has served
            pids = worker_pids(server.process.pid)
            result.rss_start_mb = round(sum(rss_mb(pid) for pid in pids), 1)
            load_started = time.monotonic()
            time.sleep(duration_s)
            result.rss_end_mb = round(sum(rss_mb(pid) for pid in worker_pids(server.process.pid)), 1)
        # Counted from the end of the warm-up.
        outcomes = [outcome for outcome in load.outcomes if outcome.started >= load_started]
        if "Traceback" in server.log():
            result.problems.append("a traceback in the server log")
    _count(result, outcomes)
    result.notes.append(f"{len(pids)} workers; {result.requests / duration_s:.0f} requests/s")
    if result.failures:
        result.problems.append(f"{result.failures} failed requests")
    return result


def kill_worker(tmp: Path, duration_s: float, clients: int = 16, jobs: int = 12) -> Result:
    """SIGKILL one of two workers under load with jobs queued: replaced, bounded failures, no job lost.

    Which connections the dying worker held cannot be read reliably from outside (they
    turn over every few milliseconds), so the check is on the client side: every failed
    request must have been in flight at the moment of the kill (none sent afterwards may
    fail), and so there are at most as many failures as requests in flight then.
    """
    threads = 8
    result = Result("kill-worker", f"{clients} clients x {duration_s:g} s, {jobs} jobs")
    env = {**_jobs_env(tmp), "GUNICORN_THREADS": str(threads)}
    body = json.dumps({"seconds": 0.02}).encode()
    workers = 2
    with gunicorn({**env, "GUNICORN_WORKERS": str(workers)}, tmp, "kill-worker") as server:
        master = server.process.pid
        # /readyz answers as soon as one worker is up: wait for all of them.
        _wait(lambda: len(worker_pids(master)) == workers, 30)
        before = worker_pids(master)
        # Fresh connections, so a failure is a request the killed worker held, not a
        # kept-alive connection to it that a client reuses afterwards.
        with Load(server.port, "/v1/Work", body, clients=clients, keepalive=False) as load:
            accepted = submit_jobs(server.port, jobs, 1.0, "kill")
            time.sleep(1.0)  # the first jobs are running, the rest queued
            unfinished = sum(
                state not in ("succeeded", "failed", "canceled")
                for state in job_states(server.port, accepted, timeout=0).values()
            )
            victim = before[0]
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            result.notes.append(f"{unfinished} of {len(accepted)} jobs unfinished at the kill")
            if not unfinished:
                result.problems.append("every job had finished before the kill: the scenario proved nothing")
            replaced = _wait(lambda: len(worker_pids(master)) == workers and victim not in worker_pids(master), 30)
            result.notes.append(
                f"worker replaced in {time.monotonic() - killed_at:.1f} s" if replaced else "worker NOT replaced"
            )
            accepted += submit_jobs(server.port, jobs // 2, 0.3, "after")
            time.sleep(max(1.0, duration_s - 1.0))
            outcomes = load.stop()
        states = job_states(server.port, accepted, timeout=60)
    _count(result, outcomes)
    result.jobs_accepted = len(accepted)
    result.jobs_completed = sum(state == "succeeded" for state in states.values())
    if not replaced:
        result.problems.append("the master did not replace the killed worker")
    in_flight = [o for o in outcomes if o.started <= killed_at <= o.ended]
    late = [o for o in outcomes if not o.ok and o.started > killed_at]
    result.allowed_failures = len(in_flight)
    result.notes.append(f"{len(in_flight)} requests in flight at the kill")
    if late:
        result.problems.append(f"{len(late)} requests sent after the kill failed, e.g. {late[0].error}")
    if result.failures > result.allowed_failures:
        result.problems.append(f"{result.failures} failures, more than the {len(in_flight)} requests in flight")
    if result.jobs_completed != result.jobs_accepted:
        lost = {job: state for job, state in states.items() if state != "succeeded"}
        result.problems.append(f"jobs not completed: {lost}")
    return result


def _postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return versions[0].parent if versions else None


def postgres_available() -> str | None:
    """None when a private PostgreSQL server can be made here, else why not."""
    if _postgres_bin() is None:
        return "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free loopback port, run as the postgres user."""

    def __init__(self, root: Path) -> None:
        self.bin = _postgres_bin()
        assert self.bin is not None
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def _run(self, *command: str, timeout: float = 60) -> None:
        subprocess.run(self._as_owner(*command), check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )

    def restart(self) -> float:
        """Restart the server, cutting every connection; seconds it took."""
        started = time.monotonic()
        # `-l` again: the restarted server must not inherit (and hold open) our pipes.
        log = str(self.root / "log")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-l", log, "-w", "restart")
        return time.monotonic() - started

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


def database_restart(tmp: Path, jobs: int = 16, work_s: float = 1.0) -> Result:
    """Restart PostgreSQL while jobs run on it: every accepted job must still succeed."""
    result = Result("database-restart", f"{jobs} jobs of {work_s:g} s, 2 workers x 2 job threads")
    reason = postgres_available()
    if reason is not None:
        result.problems.append(f"skipped: {reason}")
        return result
    root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    database = PrivatePostgres(root)
    try:
        database.start()
        env = {**_jobs_env(tmp), "JOBS_STORE": "postgresql", "DATABASE_URL": database.url}
        with gunicorn(env, tmp, "database-restart") as server:
            accepted = submit_jobs(server.port, jobs, work_s, "pg")
            time.sleep(work_s * 0.8)  # some jobs are running, the rest queued
            unfinished = sum(
                state not in ("succeeded", "failed", "canceled")
                for state in job_states(server.port, accepted, timeout=0).values()
            )
            took = database.restart()
            result.notes.append(
                f"PostgreSQL restarted in {took:.1f} s with {unfinished} of {len(accepted)} jobs unfinished"
            )
            if not unfinished:
                result.problems.append("every job had finished before the restart: the scenario proved nothing")
            accepted += submit_jobs(server.port, jobs // 4, work_s, "after")
            states = job_states(server.port, accepted, timeout=90)
            if "Traceback" in server.log():
                result.notes.append("tracebacks logged (connection errors during the restart)")
    finally:
        database.stop()
        shutil.rmtree(root, ignore_errors=True)
    result.jobs_accepted = len(accepted)
    result.jobs_completed = sum(state == "succeeded" for state in states.values())
    if result.jobs_completed != result.jobs_accepted:
        lost = {job: state for job, state in states.items() if state != "succeeded"}
        result.problems.append(f"jobs not completed: {lost}")
    return result


def graceful_shutdown(tmp: Path, clients: int = 12, work_s: float = 1.0) -> Result:
    """SIGTERM with requests in flight: each gets its answer; gunicorn exits within 10 s."""
    result = Result("graceful-shutdown", f"{clients} clients, {work_s:g} s requests")
    body = json.dumps({"seconds": work_s}).encode()
    with gunicorn({"HANDLERS_DIR": str(RESILIENCE_HANDLERS), "JOBS_STORE": "none"}, tmp, "shutdown") as server:
        load = Load(server.port, "/v1/Work", body, clients=clients)
        with load:
            time.sleep(work_s * 2.5)  # mid-request for most clients
            term_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(30)
                exit_s = time.monotonic() - term_at
            except subprocess.TimeoutExpired:
                exit_s = float("inf")
            outcomes = load.stop()
    in_flight = [o for o in outcomes if o.started < term_at < o.ended]
    result.requests = len(in_flight)
    result.failures = sum(not o.ok for o in in_flight)
    result.p99_ms = p99_ms(in_flight)
    result.notes.append(f"exit {exit_s:.1f} s after SIGTERM (code {server.process.returncode})")
    if not in_flight:
        result.problems.append("no request was in flight at SIGTERM: the scenario proved nothing")
    if result.failures:
        result.problems.append(f"{result.failures} of {len(in_flight)} in-flight requests failed")
    if exit_s > 10:
        result.problems.append(f"gunicorn took {exit_s:.1f} s to exit, over Cloud Run's 10 s")
    return result


SCENARIOS = ("soak", "kill-worker", "database-restart", "graceful-shutdown")


def run(only: tuple[str, ...], smoke: bool, tmp: Path) -> list[Result]:
    """Run the chosen scenarios at full or smoke size."""
    results = []
    for name in only:
        if name == "soak":
            results.append(soak(tmp, duration_s=8 if smoke else 120))
        elif name == "kill-worker":
            results.append(kill_worker(tmp, duration_s=4.5 if smoke else 30, jobs=8 if smoke else 40))
        elif name == "database-restart":
            results.append(database_restart(tmp, jobs=8 if smoke else 40))
        elif name == "graceful-shutdown":
            results.append(graceful_shutdown(tmp))
        else:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return results


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def markdown(results: list[Result], command: str) -> str:
    """The RESULTS-resilience.md text."""
    lines = [
        "# Resilience: load and faults on the real gunicorn",
        "",
        f"Made by `{command}` on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs "
        "(shared with the load generator). See bench/resilience.py for what each scenario does; "
        "throughput figures are in RESULTS.md.",
        "",
        "| Scenario | Size | Requests | Failures (allowed) | p99 ms | Worker RSS start → end MiB "
        "| Jobs accepted → completed | Notes | Guarantees |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        rss = "-" if r.rss_start_mb is None else f"{r.rss_start_mb:.1f} → {_cell(r.rss_end_mb)}"
        jobs = "-" if r.jobs_accepted is None else f"{r.jobs_accepted} → {r.jobs_completed}"
        verdict = "held" if not r.problems else "BROKEN: " + "; ".join(r.problems)
        lines.append(
            f"| {r.scenario} | {r.size} | {r.requests} | {r.failures} ({r.allowed_failures}) | {_cell(r.p99_ms)} "
            f"| {rss} | {jobs} | {'; '.join(r.notes)} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="reduced size, as CI runs it")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the markdown table")
    args = parser.parse_args(argv)
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    with tempfile.TemporaryDirectory(prefix="resilience-") as tmp:
        results = run(only, args.smoke, Path(tmp))
    command = "python -m bench.resilience" + (" --smoke" if args.smoke else "")
    text = markdown(results, command)
    args.output.write_text(text)
    print(text)
    print(json.dumps([asdict(r) for r in results], indent=1))
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
