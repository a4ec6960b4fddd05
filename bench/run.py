"""Load benchmark: this project under gunicorn against the tutorial-style baseline app.

    python -m bench.run              # the full run: 3 runs of 8 s at 16 and 64 connections
    python -m bench.run --smoke      # a few seconds: proves the benchmark still works
    python -m bench.run --profile    # also profile a worker under load (py-spy)

For each workload (a model and a request body), it starts on loopback, one after the
other, this project exactly as app.yaml runs it (`gunicorn -c gunicorn.conf.py main:app`,
default settings: validation, CORS, request ids, JSON logs, metrics and batching all on)
and its tutorial-style baseline (`gunicorn -w 2 bench.baseline.main:app` for Digits and
XXXModel, `gunicorn -w 2 bench.baseline.embedding:app` for SentenceEmbedding: see
bench/baseline/).
Each is timed from process start to its first `GET /readyz` 200 (cold start; the fastest
of --cold-starts starts is shown), warmed up, then driven by wrk with bench/post.lua at
each connection count, the two apps taking turns run by run so that both meet the same
machine load; the run with the median throughput of each set is kept. Worker memory,
and the whole project server's (master and workers), is read from /proc after the load;
the installed size of requirements.txt is summed from the installed distributions.

It prints a markdown table and writes, in --output-dir (default bench/): RESULTS.md (the
table, the targets, the exact command and the machine), results.json and results.png
(requests/s and p99 by concurrency). Nothing here asserts timings: the numbers are for
people to read, and the machine they ran on is written next to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import bodies
from bench.profiling import step_costs_table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / "bench"
LUA_SCRIPT = BENCH_DIR / "post.lua"
PROFILES_DIR = BENCH_DIR / "profiles"
PROFILE_RATE_HZ = 250
PROJECT = "model-serving"
BASELINE = "baseline"


# --- what is measured ---


@dataclass(frozen=True)
class Workload:
    """A model the apps serve, and the JSON bodies the requests send it in turn (bench/bodies.py)."""

    model: str
    make_bodies: Callable[[], list[bytes]]
    requires: tuple[str, ...] = ()  # files under the project root the workload needs
    baseline: str = "baseline"  # the APPS entry that serves it the tutorial's way
    rival: str | None = None  # the APPS entry of another serving framework measured beside it

    def missing(self) -> list[str]:
        return [path for path in self.requires if not (PROJECT_ROOT / path).exists()]


EMBEDDING_BASELINE = "baseline-embedding"
EMBEDDING_MODEL_FILE = "models/sentence_embedding/model.onnx"
# LitServe, the rival issue 24 names for Digits (bench/baseline/litserve_digits.py).
LITSERVE = "litserve"

WORKLOADS = {
    "SentenceEmbedding": Workload(
        "SentenceEmbedding", bodies.sentence_bodies, requires=(EMBEDDING_MODEL_FILE,), baseline=EMBEDDING_BASELINE
    ),
    "Digits": Workload("Digits", bodies.digit_bodies, requires=("handlers/digits.py",), rival=LITSERVE),
    "XXXModel": Workload("XXXModel", bodies.greeting_bodies),
}


@dataclass(frozen=True)
class App:
    """How to start one of the two servers on a port."""

    name: str
    command: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]]


def _gunicorn() -> str:
    return str(Path(sys.executable).parent / "gunicorn")


def litserve_python() -> str:
    """The interpreter that runs the LitServe baseline: `$BENCH_LITSERVE_PYTHON`, else this one."""
    return os.environ.get("BENCH_LITSERVE_PYTHON") or sys.executable


def litserve_missing() -> str | None:
    """Why the LitServe baseline cannot run here, or None."""
    check = subprocess.run([litserve_python(), "-c", "import litserve"], capture_output=True, check=False)
    if check.returncode == 0:
        return None
    return (
        f"litserve is not importable by {litserve_python()}: `pip install -r requirements-bench.txt`, or point "
        "BENCH_LITSERVE_PYTHON at a venv that has it"
    )


def app_yaml_env(path: Path = PROJECT_ROOT / "app.yaml") -> dict[str, str]:
    """The `env_variables` app.yaml gives the app on App Engine (threads, workers...)."""
    import yaml

    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(name): str(value) for name, value in (config.get("env_variables") or {}).items()}


# App Engine and Cloud Run log every request themselves, so there the app writes no line of
# its own for a successful request (REQUEST_LOG_SAMPLE_RATE's `auto`); on loopback the
# app would take itself for a local run and log them all. Set the variable to measure that.
GOOGLE_REQUEST_LOG = {} if "REQUEST_LOG_SAMPLE_RATE" in os.environ else {"REQUEST_LOG_SAMPLE_RATE": "0"}


def project_env() -> dict[str, str]:
    """app.yaml's variables, each overridable from the benchmark's own environment."""
    return {name: value for name, value in app_yaml_env().items() if name not in os.environ}


def _tutorial_gunicorn(port: int, app: str) -> list[str]:
    """gunicorn as the tutorial's start.sh runs `app`, with gunicorn's own HTTP parser: a
    tutorial install (`pip install flask gunicorn`) has no gunicorn_h1c, which gunicorn
    would pick up from this project's environment."""
    return [_gunicorn(), "-b", f"127.0.0.1:{port}", "-w", "2", "--http-parser", "python", app]


APPS = {
    # As app.yaml's entrypoint runs it, with app.yaml's environment; only the address differs.
    PROJECT: App(
        PROJECT,
        command=lambda port: [_gunicorn(), "-c", "gunicorn.conf.py", "main:app"],
        env=lambda port: {**project_env(), **GOOGLE_REQUEST_LOG, "PORT": str(port), "HOST": "127.0.0.1"},
    ),
    # As the tutorial's start.sh runs it, with the tutorial's packages.
    BASELINE: App(
        BASELINE,
        command=lambda port: _tutorial_gunicorn(port, "bench.baseline.main:app"),
        env=lambda port: {},
    ),
    # Digits on LitServe, run by $BENCH_LITSERVE_PYTHON (it needs `litserve`, requirements-bench.txt).
    LITSERVE: App(
        LITSERVE,
        command=lambda port: [litserve_python(), "-m", "bench.baseline.litserve_digits", str(port)],
        env=lambda port: {"PYTHONPATH": str(PROJECT_ROOT)},
    ),
    # The same, serving all-MiniLM-L6-v2 with sentence-transformers (torch).
    EMBEDDING_BASELINE: App(
        EMBEDDING_BASELINE,
        command=lambda port: _tutorial_gunicorn(port, "bench.baseline.embedding:app"),
        env=lambda port: {"HF_HUB_OFFLINE": "1"},
    ),
}


@dataclass
class WrkRun:
    """One wrk run's summary."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Row:
    """One line of the results table: an app, a model and a connection count."""

    app: str
    model: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cold_start_s: float
    rss_mb: float
    unique_mb: float
    workers: int
    load: float = 0.0  # the machine's 1-minute load average during the runs
    runs: list[dict[str, Any]] = field(default_factory=list)
    ratio: float | None = None
    # Requests per model call while this row ran, from the server's own /metrics
    # (model_serving_batch_size): above 1 means requests were batched. None: not measured.
    mean_batch: float | None = None
    server: str = ""  # the APPS entry that served the row (a workload's baseline differs)
    # The server's CPU time (master and workers, utime + stime) per request over the runs:
    # what a request costs, whatever share of the cores the server got on a busy machine.
    cpu_ms: float | None = None
    cpu_ratio: float | None = None  # the baseline's cpu_ms over this row's: CPU efficiency


# --- servers ---


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    cold_start_s: float
    log_path: Path

    # Cores the server burns while nobody calls it (measured after it started); above
    # IDLE_BUSY_CORES it is paused outside its own turns (`turn`).
    idle_cores: float = 0.0

    def workers(self) -> list[int]:
        try:
            return [
                int(pid)
                for pid in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            ]
        except OSError:
            return []

    def group(self) -> list[int]:
        """Every process the server started: `serving` gives it a session (and process group) of its own."""
        return process_group(self.process.pid)

    def measure_idle(self, seconds: float = 2.0) -> float:
        """The cores the server's processes use over `seconds` with no request: its `idle_cores`."""
        pids = self.group()
        before = process_cpu_seconds(pids)
        time.sleep(seconds)
        self.idle_cores = (process_cpu_seconds(pids) - before) / seconds
        return self.idle_cores

    @property
    def busy_when_idle(self) -> bool:
        return self.idle_cores > IDLE_BUSY_CORES

    def pause(self) -> None:
        """Stop a server that is busy when idle (SIGSTOP to its group), so it takes no core from the others."""
        if self.busy_when_idle:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)

    @contextmanager
    def turn(self) -> Iterator[Server]:
        """The server running for one of its own measurements, paused again after it (if busy when idle)."""
        self.resume()
        try:
            yield self
        finally:
            self.pause()


# LitServe's worker processes poll their queues while idle: measured here, 1.4 of the 2
# cores with no request at all, which every other server measured beside it lost. A
# server that uses more than this while idle is paused outside its own turns.
IDLE_BUSY_CORES = 0.05


def process_group(pgid: int) -> list[int]:
    """The pids of the processes in group `pgid` (from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp, stat's field 5
            pids.append(int(stat.parent.name))
    return pids


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@contextmanager
def serving(
    app: App, log_path: Path, timeout: float = 60.0, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start `app` on a free port; the cold start is the time until /readyz answers 200."""
    port = free_port()
    env = {**os.environ, **app.env(port), **(extra_env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            app.command(port), cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while _status(url + "/readyz") != 200:
            if process.poll() is not None or time.perf_counter() - started > timeout:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{app.name} did not become ready (exit code {process.poll()}):\n{tail}")
            time.sleep(0.005)
        yield Server(url, process, time.perf_counter() - started, log_path)
    finally:
        with suppress(ProcessLookupError):  # a paused server (Server.pause) must run to stop
            os.killpg(process.pid, signal.SIGCONT)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        # Whatever the app started goes with it (LitServe's worker processes outlive their
        # parent): it runs in a session of its own, so its whole process group.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def worker_memory_mb(pids: Sequence[int]) -> tuple[float, float]:
    """Mean resident and mean unique (private) memory of the processes, in MB.

    Unique memory is what one more worker adds: pages it shares with the master
    (copy-on-write after the fork) are counted in RSS but not here.
    """
    rss, unique = [], []
    for pid in pids:
        try:
            fields = dict(_smaps_rollup(pid))
        except OSError:
            continue
        rss.append(fields.get("Rss", 0) / 1024)
        unique.append((fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024)
    if not rss:
        return 0.0, 0.0
    return statistics.mean(rss), statistics.mean(unique)


def server_memory_mb(server: Server) -> dict[str, float]:
    """The whole server (master and workers): RSS summed and PSS summed, in MB.

    RSS counts a page shared by the master and its forked workers once per process, so
    its sum overstates what the server holds; PSS splits each shared page among the
    processes that map it, so its sum is the memory the server holds.
    """
    rss = pss = 0.0
    for pid in [server.process.pid, *server.workers()]:
        with suppress(OSError):
            fields = dict(_smaps_rollup(pid))
            rss += fields.get("Rss", 0) / 1024
            pss += fields.get("Pss", 0) / 1024
    return {"server_rss_mb": rss, "server_pss_mb": pss}


def installed_size_mb(requirements: Path, top: int = 5) -> tuple[float, list[tuple[str, float]]]:
    """MB that installing `requirements` takes, and its `top` largest distributions.

    Reads the file (and the files it includes with -r), then follows each pinned
    distribution's dependencies (extras and markers applied) through the metadata of
    this environment, and sums the files each distribution's RECORD lists. A
    distribution not installed here is left out (the benchmark runs in the venv that
    `make` built from these files, where all are).
    """
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pending = [(Requirement(line), frozenset[str]()) for line in _requirement_lines(requirements)]
    seen: set[str] = set()
    sizes: dict[str, float] = {}
    while pending:
        requirement, _ = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name not in sizes:
            sizes[name] = sum(_file_size(dist, file) for file in dist.files or ()) / 1e6
        for text in dist.requires or ():
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(
                marker.evaluate({**default_environment(), "extra": extra}) for extra in (extras or {""})
            ):
                pending.append((dependency, frozenset()))
    biggest = sorted(sizes.items(), key=lambda item: -item[1])[:top]
    return sum(sizes.values()), biggest


def _requirement_lines(path: Path) -> Iterator[str]:
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith("-r "):
            yield from _requirement_lines(path.parent / line[3:].strip())
        elif line and not line.startswith(("#", "-")):
            yield line


def _file_size(dist: Any, file: Any) -> int:
    try:
        return int(Path(dist.locate_file(file)).stat().st_size)
    except OSError:
        return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds; 0 for a gone one."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime and stime, stat's fields 14 and 15
    return total / _CLOCK_TICKS


def _smaps_rollup(pid: int) -> Iterator[tuple[str, int]]:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            yield name.strip(), int(parts[0])


# --- wrk ---


def run_wrk(url: str, body_file: Path, connections: int, seconds: float, threads: int) -> WrkRun:
    """Drive `url` with wrk and bench/post.lua; raises when wrk reports nothing."""
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    env = {**os.environ, "BENCH_BODY": str(body_file)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    line = next((line for line in result.stdout.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    data = json.loads(line.removeprefix("BENCH "))
    errors = sum(data[key] for key in ("connect", "read", "write", "status", "timeout"))
    return WrkRun(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
    )


# --- the benchmark ---


@dataclass(frozen=True)
class Plan:
    workloads: list[str]
    apps: list[str]
    connections: list[int]
    runs: int
    seconds: float
    warmup_s: float
    wrk_threads: int
    profile: bool
    cold_starts: int = 1
    # Handler modules (file stems) the project serves; empty: all of handlers/.
    handlers: tuple[str, ...] = ()

    def env_for(self, app_name: str, workdir: Path) -> dict[str, str]:
        """What `app_name` gets on top of its own environment: the chosen handlers."""
        if app_name != PROJECT or not self.handlers:
            return {}
        return {"HANDLERS_DIR": str(handlers_subset(self.handlers, workdir / "handlers"))}


def servers_to_start(plan: Plan, workloads: Sequence[str]) -> list[str]:
    """The APPS entries the plan needs: the project, each workload's baseline, and rivals asked for."""
    names = [PROJECT] if PROJECT in plan.apps else []
    if BASELINE in plan.apps:
        names += list(dict.fromkeys(WORKLOADS[name].baseline for name in workloads))
    rivals = [WORKLOADS[name].rival for name in workloads]
    names += list(dict.fromkeys(rival for rival in rivals if rival is not None and rival in plan.apps))
    return names


def benchmark(
    plan: Plan, workdir: Path, say: Callable[[str], None]
) -> tuple[list[Row], dict[str, str], dict[str, float]]:
    """Every (workload, app, connections) row; notes (skipped workloads, profiles); measures.

    The apps are started one after the other, then measured in turns (a run of one, a
    run of the other, ...) so that both see the same machine: on a shared machine the
    load drifts over minutes, and measuring one app long after the other would compare
    the load as much as the apps. Each workload's baseline is its own tutorial-style
    app (`Workload.baseline`); its rows are labelled `baseline`. `measures` holds the
    whole project server's memory after the load and the installed size of
    requirements.txt, for the targets.
    """
    notes: dict[str, str] = {}
    measures: dict[str, float] = {}
    workloads: dict[str, Path] = {}
    for name in plan.workloads:
        missing = WORKLOADS[name].missing()
        if missing:
            notes[name] = f"not served here (missing {', '.join(missing)}; `make models` writes it)"
            continue
        workloads[name] = workdir / f"{name}.jsonl"
        bodies.write_bodies(WORKLOADS[name].make_bodies, workloads[name])
    rows: list[Row] = []
    names = servers_to_start(plan, list(workloads))
    if LITSERVE in names and (why := litserve_missing()) is not None:
        names.remove(LITSERVE)
        notes[LITSERVE] = why
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for server_name in names:
            say(f"{server_name}: starting")
            servers[server_name] = stack.enter_context(
                serving(APPS[server_name], workdir / f"{server_name}.log", extra_env=plan.env_for(server_name, workdir))
            )
            say(f"  ready in {servers[server_name].cold_start_s:.2f} s")
        for server_name, server in servers.items():
            if server.measure_idle() > IDLE_BUSY_CORES:
                server.pause()
                notes[f"info:{server_name} while idle"] = (
                    f"its processes used {server.idle_cores:.2f} cores with no request at all, so it was paused "
                    "(SIGSTOP to its process group) whenever another server was measured, and resumed for its own "
                    "first request, warm-up and runs; left running, it would have taken that share of the cores "
                    "from every other server's runs"
                )
        for name, body_file in workloads.items():
            roles = {PROJECT: PROJECT, BASELINE: WORKLOADS[name].baseline}
            rival = WORKLOADS[name].rival
            if rival is not None:
                roles[rival] = rival
            by_app = {app: servers[server] for app, server in roles.items() if server in servers}
            urls = {app: f"{server.url}/v1/{WORKLOADS[name].model}" for app, server in by_app.items()}
            for app_name, url in urls.items():
                with by_app[app_name].turn():
                    first = _post(url, body_file)
                    if first != 200:
                        raise RuntimeError(f"{app_name} answered {first} to {url}; see {by_app[app_name].log_path}")
                    if plan.warmup_s:
                        run_wrk(url, body_file, max(plan.connections), plan.warmup_s, plan.wrk_threads)
            for connections in plan.connections:
                runs: dict[str, list[WrkRun]] = {app: [] for app in urls}
                cpu: dict[str, float] = dict.fromkeys(urls, 0.0)
                loads: list[float] = []
                batches_before = (
                    batch_counts(servers[PROJECT].url, WORKLOADS[name].model) if PROJECT in servers else None
                )
                for _ in range(plan.runs):
                    for app_name, url in urls.items():
                        loads.append(os.getloadavg()[0])
                        with by_app[app_name].turn() as server:
                            pids = server.group()
                            before = process_cpu_seconds(pids)
                            runs[app_name].append(run_wrk(url, body_file, connections, plan.seconds, plan.wrk_threads))
                            cpu[app_name] += process_cpu_seconds(pids) - before
                for app_name, app_runs in runs.items():
                    rows.append(_row(app_name, name, connections, app_runs, by_app[app_name], statistics.mean(loads)))
                    rows[-1].server = roles[app_name]
                    requests = sum(run.requests for run in app_runs)
                    rows[-1].cpu_ms = 1000 * cpu[app_name] / requests if requests else None
                    if app_name == PROJECT and batches_before is not None:
                        after = batch_counts(servers[PROJECT].url, WORKLOADS[name].model)
                        rows[-1].mean_batch = mean_batch(batches_before, after)
                    say(f"  {name} on {roles[app_name]}, {connections:>3} connections: {rows[-1].rps:8.0f} req/s")
            if plan.profile and PROJECT in servers:
                notes[f"profile:{name}"] = profile_worker(name, body_file, plan, workdir)
        if PROJECT in servers:
            memory = server_memory_mb(servers[PROJECT])
            measures.update(memory)
            notes["info:whole server memory"] = (
                f"the project's master and {len(servers[PROJECT].workers())} workers after the load: RSS summed "
                f"{memory['server_rss_mb']:.0f} MB (pages shared after the fork counted in every process), "
                f"PSS summed {memory['server_pss_mb']:.0f} MB (each page counted once, as the instance's "
                "memory limit sees it)"
            )
    cold_starts = _more_cold_starts(plan, names, workdir, say)
    for row in rows:
        row.cold_start_s = min([row.cold_start_s, *cold_starts.get(row.server, [])])
        base = _find(rows, BASELINE, row.model, row.connections)
        row.ratio = row.rps / base.rps if base and base.rps else None
        if base is not None and base.cpu_ms and row.cpu_ms:
            row.cpu_ratio = base.cpu_ms / row.cpu_ms
    size_mb, biggest = installed_size_mb(PROJECT_ROOT / "requirements.txt")
    measures["requirements_mb"] = size_mb
    notes["info:requirements.txt installed"] = (
        f"{size_mb:.0f} MB: the installed files of every distribution requirements.txt pins and what they "
        "depend on, summed from their RECORD in this environment; largest: "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in biggest)
    )
    return rows, notes, measures


def _row(app: str, model: str, connections: int, runs: list[WrkRun], server: Server, load: float) -> Row:
    median = sorted(runs, key=lambda run: run.rps)[len(runs) // 2]
    rss, unique = worker_memory_mb(server.workers())
    return Row(
        app=app,
        model=model,
        connections=connections,
        rps=median.rps,
        p50_ms=median.p50_ms,
        p99_ms=median.p99_ms,
        errors=sum(run.errors for run in runs),
        cold_start_s=server.cold_start_s,
        rss_mb=rss,
        unique_mb=unique,
        workers=len(server.workers()),
        load=load,
        runs=[{**asdict(run), "rps": run.rps} for run in runs],
    )


def _more_cold_starts(
    plan: Plan, names: Sequence[str], workdir: Path, say: Callable[[str], None]
) -> dict[str, list[float]]:
    """Further start-to-ready times per server (the table shows the fastest of all)."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(plan.cold_starts - 1):
        for name in names:
            with serving(APPS[name], workdir / f"{name}-start.log", extra_env=plan.env_for(name, workdir)) as server:
                times[name].append(server.cold_start_s)
    if plan.cold_starts > 1:
        say("cold starts: " + ", ".join(f"{app} {' '.join(f'{t:.2f}' for t in ts)} s" for app, ts in times.items()))
    return times


def handlers_subset(stems: Sequence[str], directory: Path) -> Path:
    """A HANDLERS_DIR holding only the named handlers/ modules (as symbolic links)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        source = PROJECT_ROOT / "handlers" / f"{stem}.py"
        if not source.is_file():
            raise ValueError(f"no handler module handlers/{stem}.py")
        link = directory / source.name
        if not link.exists():
            link.symlink_to(source)
    return directory


def batch_counts(url: str, model: str) -> tuple[float, float] | None:
    """(model calls, requests in them) for `model` so far, from the server's /metrics."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        for suffix in ("count", "sum"):
            if line.startswith(f'model_serving_batch_size_{suffix}{{model="{model}"}} '):
                found[suffix] = float(line.rsplit(" ", 1)[1])
    if set(found) != {"count", "sum"}:
        return None
    return found["count"], found["sum"]


def mean_batch(before: tuple[float, float], after: tuple[float, float] | None) -> float | None:
    """Requests per model call between two `batch_counts` readings."""
    if after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def _post(url: str, body_file: Path) -> int | None:
    request = urllib.request.Request(
        url, data=bodies.first_body(body_file), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


# --- profiling ---


def profile_worker(name: str, body_file: Path, plan: Plan, workdir: Path) -> str:
    """Where one worker's CPU goes under load, step by step; also written to bench/profiles/<name>.md.

    A project server of one gthread worker (app.yaml's threads) is started for it, driven by
    wrk at the plan's largest connection count, and sampled by py-spy (the thread holding
    the GIL) while the worker's CPU time and the requests it answers are measured over the
    same seconds (bench/profiling.py sorts the samples into steps).
    """
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return "(py-spy not installed: `pip install -r requirements-bench.txt`)"
    seconds = max(plan.seconds, 5.0)
    connections = max(plan.connections)
    out = workdir / f"profile-{name}.txt"
    extra = {**plan.env_for(PROJECT, workdir), "GUNICORN_WORKERS": "1"}
    with serving(APPS[PROJECT], workdir / f"profile-{name}.log", extra_env=extra) as server:
        url = f"{server.url}/v1/{WORKLOADS[name].model}"
        run_wrk(url, body_file, connections, 2.0, plan.wrk_threads)  # warm up
        workers = server.workers()
        load = subprocess.Popen(
            ["wrk", f"-t{plan.wrk_threads}", f"-c{connections}", f"-d{seconds + 1:g}s", "-s", str(LUA_SCRIPT), url],
            env={**os.environ, "BENCH_BODY": str(body_file)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(0.5)
        before, counted = process_cpu_seconds(workers), _served(server.url, WORKLOADS[name].model)
        subprocess.run(
            [
                *(str(py_spy), "record", "--pid", str(workers[0]), "--duration", f"{int(seconds)}"),
                *("--rate", str(PROFILE_RATE_HZ), "--format", "raw", "--gil", "--nonblocking", "--output", str(out)),
            ],
            capture_output=True,
            timeout=seconds + 60,
            check=False,
        )
        cpu = process_cpu_seconds(workers) - before
        answered = _served(server.url, WORKLOADS[name].model) - counted
        load.communicate(timeout=seconds + 30)
    if not out.exists():
        return "(py-spy could not attach: it needs ptrace permission)"
    collapsed = out.read_text()
    summary = (
        f"One worker, {connections} clients, {seconds:g} s sampled: {answered:.0f} requests answered "
        f"({answered / seconds:.0f}/s), {1000 * cpu:.0f} ms of worker CPU.\n\n"
        + step_costs_table(collapsed, rate_hz=PROFILE_RATE_HZ, requests=answered, cpu_s=cpu)
        + "\n\nFunctions (with callees / itself):\n\n"
        + summarize_profile(collapsed)
    )
    PROFILES_DIR.mkdir(exist_ok=True)
    (PROFILES_DIR / f"{name}.md").write_text(f"# {name}: where a worker's CPU goes\n\n{summary}\n", encoding="utf-8")
    return summary


def _served(url: str, model: str) -> float:
    """Requests the server has answered for `model` so far, from its /metrics; 0 when unreadable."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("model_serving_requests_total{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


# Frames that every sample has; they say nothing about where the time goes.
_PLUMBING = ("threading.py", "concurrent/futures/thread.py", "gunicorn/arbiter.py", "gunicorn/app/", "<module>")


def summarize_profile(collapsed: str, top: int = 25) -> str:
    """A markdown table of the functions holding the GIL most, from py-spy's raw output."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_frame_name(frame) for frame in stack.split(";")]
        for name in set(frames):
            inclusive[name] += samples
        own[frames[-1]] += samples
    if not total:
        return "(no samples)"
    lines = ["| function | with callees | itself |", "| --- | ---: | ---: |"]
    shown = [(name, n) for name, n in inclusive.most_common() if not any(p in name for p in _PLUMBING)][:top]
    for name, samples in shown:
        lines.append(f"| `{name}` | {100 * samples / total:.1f}% | {100 * own[name] / total:.1f}% |")
    return "\n".join(lines) + f"\n\n{total} samples of the thread holding the GIL in one worker."


def _frame_name(frame: str) -> str:
    # py-spy: "function (path/to/file.py:123)": keep the function and the file's last two parts.
    function, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    return f"{function} ({short})" if short else function


# --- reporting ---


def markdown_table(rows: Sequence[Row]) -> str:
    columns = "app | model | connections | req/s | p50 ms | p99 ms | errors | vs baseline | cold start s"
    lines = [
        f"| {columns} | RSS/worker MB | unique/worker MB | requests/model call | CPU ms/request "
        "| vs baseline, CPU | load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        batch = f"{r.mean_batch:.2f}" if r.mean_batch is not None else "-"
        cpu = f"{r.cpu_ms:.2f}" if r.cpu_ms is not None else "-"
        cpu_ratio = f"{r.cpu_ratio:.2f}x" if r.cpu_ratio is not None else "-"
        lines.append(
            f"| {r.app} | {r.model} | {r.connections} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} "
            f"| {ratio} | {r.cold_start_s:.2f} | {r.rss_mb:.0f} | {r.unique_mb:.0f} | {batch} | {cpu} | {cpu_ratio} "
            f"| {r.load:.1f} |"
        )
    return "\n".join(lines)


def _find(rows: Sequence[Row], app: str, model: str, connections: int) -> Row | None:
    return next((r for r in rows if (r.app, r.model, r.connections) == (app, model, connections)), None)


# Issue 13's targets: (model, connections) -> (min ratio to its baseline, max p99 ms or None).
THROUGHPUT_TARGETS: dict[tuple[str, int], tuple[float, float | None]] = {
    ("SentenceEmbedding", 16): (9.0, 250.0),
    ("SentenceEmbedding", 64): (9.0, None),
    ("Digits", 16): (9.0, None),
    ("Digits", 64): (9.0, 60.0),
}
# Issue 24: (model, connections) -> (min ratio, against which app). Digits must also answer
# with a lower p99 than LitServe.
RIVAL_TARGETS: dict[tuple[str, int], tuple[float, str]] = {
    ("Digits", 16): (1.5, LITSERVE),
    ("Digits", 64): (1.5, LITSERVE),
    ("XXXModel", 16): (2.5, BASELINE),
    ("XXXModel", 64): (2.5, BASELINE),
}
COLD_START_TARGET_S = 2.0
SERVER_MEMORY_TARGET_MB = 700.0
REQUIREMENTS_TARGET_MB = 300.0


def targets(rows: Sequence[Row], measures: dict[str, float] | None = None) -> list[tuple[str, str, bool | None]]:
    """The issues' targets: (target, what was measured, met?); None when not measured."""
    measures = measures or {}
    checks: list[tuple[str, str, bool | None]] = []
    for (model, connections), (ratio, p99) in THROUGHPUT_TARGETS.items():
        target = f"{model}, {connections} clients: >= {ratio:g}x its baseline" + (
            f", p99 <= {p99:g} ms" if p99 is not None else ""
        )
        row = _find(rows, PROJECT, model, connections)
        if row is None or row.ratio is None:
            checks.append((target, "-", None))
            continue
        met = row.ratio >= ratio and (p99 is None or row.p99_ms <= p99)
        cpu = f"; CPU per request {row.cpu_ratio:.2f}x less" if row.cpu_ratio is not None else ""
        checks.append((target, f"{row.ratio:.2f}x, p99 {row.p99_ms:.1f} ms{cpu}", met))
    for (model, connections), (ratio, other_app) in RIVAL_TARGETS.items():
        lower_p99 = other_app == LITSERVE
        target = f"{model}, {connections} clients: >= {ratio:g}x {other_app}" + (", lower p99" if lower_p99 else "")
        row, other = _find(rows, PROJECT, model, connections), _find(rows, other_app, model, connections)
        if row is None or other is None or not other.rps:
            checks.append((target + " (issue 24)", "-", None))
            continue
        measured = f"{row.rps / other.rps:.2f}x ({row.rps:.0f} vs {other.rps:.0f} req/s)"
        if lower_p99:
            measured += f", p99 {row.p99_ms:.1f} vs {other.p99_ms:.1f} ms"
        met = row.rps / other.rps >= ratio and (not lower_p99 or row.p99_ms < other.p99_ms)
        checks.append((target + " (issue 24)", measured, met))
    for connections in sorted({r.connections for r in rows}):
        row = _find(rows, PROJECT, "XXXModel", connections)
        if row is not None and row.ratio is not None:
            checks.append(
                (
                    f"XXXModel, every feature on: >= 1.5x baseline ({connections} clients; issue 7)",
                    f"{row.ratio:.2f}x",
                    row.ratio >= 1.5,
                )
            )
    project = [r for r in rows if r.app == PROJECT]
    if project:
        cold = max(r.cold_start_s for r in project)
        checks.append(
            (
                f"Cold start (process start to /readyz 200) <= {COLD_START_TARGET_S:g} s",
                f"{cold:.2f} s",
                cold <= COLD_START_TARGET_S,
            )
        )
    # Judged on PSS: summed RSS counts the pages the workers share with the master (the
    # app, the model's bytes) once per process, which no memory limit does.
    if "server_rss_mb" in measures:
        rss, pss = measures["server_rss_mb"], measures["server_pss_mb"]
        checks.append(
            (
                f"Whole server, every model, 2 workers: <= {SERVER_MEMORY_TARGET_MB:.0f} MB (PSS summed)",
                f"PSS summed {pss:.0f} MB (RSS summed {rss:.0f} MB)",
                pss <= SERVER_MEMORY_TARGET_MB,
            )
        )
    if "requirements_mb" in measures:
        size = measures["requirements_mb"]
        checks.append(
            (
                f"requirements.txt installed: <= {REQUIREMENTS_TARGET_MB:.0f} MB",
                f"{size:.0f} MB",
                size <= REQUIREMENTS_TARGET_MB,
            )
        )
    errors = sum(r.errors for r in rows)
    checks.append(("No errors under any load", f"{errors} errors", errors == 0))
    return checks


def targets_table(rows: Sequence[Row], measures: dict[str, float] | None = None) -> str:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for target, measured, met in targets(rows, measures):
        lines.append(f"| {target} | {measured} | {'yes' if met else 'no' if met is not None else 'not measured'} |")
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    with suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load average before the run {load}"


def plot(rows: Sequence[Row], path: Path) -> None:
    """Requests/s and p99 latency by concurrency, one line per app and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = sorted({(r.model, r.app) for r in rows})
    for model, app in series:
        points = sorted((r for r in rows if (r.model, r.app) == (model, app)), key=lambda r: r.connections)
        style = "-" if app == PROJECT else "--"
        marker = "o" if model == "Digits" else "s"
        label = f"{model}: {app}"
        left.plot([p.connections for p in points], [p.rps for p in points], style, marker=marker, label=label)
        right.plot([p.connections for p in points], [p.p99_ms for p in points], style, marker=marker, label=label)
    for axis, title, unit in ((left, "Throughput", "requests/s"), (right, "p99 latency", "ms")):
        axis.set_title(title)
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel(unit)
        axis.set_xticks(sorted({r.connections for r in rows}))
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
    left.legend(fontsize=8)
    figure.suptitle("model-serving vs the tutorial-style baseline (wrk over loopback)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_results(
    rows: Sequence[Row],
    notes: dict[str, str],
    command: str,
    output_dir: Path,
    plan: Plan,
    machine_line: str,
    measures: dict[str, float] | None = None,
) -> Path:
    """Write RESULTS.md, results.json and results.png; returns RESULTS.md's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": machine_line,
                "rows": [asdict(r) for r in rows],
                "measures": measures or {},
            },
            indent=1,
        )
        + "\n"
    )
    if rows:
        plot(rows, output_dir / "results.png")
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        "",
        f"Generated by `{command}` on {today}.",
        f"Machine: {machine_line}.",
        "model-serving ran as app.yaml runs it: `gunicorn -c gunicorn.conf.py main:app` with "
        + " ".join(f"`{name}={os.environ.get(name, value)}`" for name, value in sorted(app_yaml_env().items()))
        + " (app.yaml's `env_variables`, as overridden by the benchmark's environment), and "
        + " ".join(f"`{name}={value}`" for name, value in GOOGLE_REQUEST_LOG.items())
        + " as on App Engine and Cloud Run, where the platform logs every request (unset here: the app's own "
        "line for every request). LitServe (bench/baseline/litserve_digits.py) ran under "
        f"`{litserve_python()}`.",
        f"wrk: {plan.wrk_threads} threads, {plan.runs} run(s) of {plan.seconds:g} s per row (the median by "
        "throughput is shown), after a warm-up, the apps taking turns run by run; bench/post.lua POSTs the "
        "workload's bodies in turn (bench/bodies.py: 62 different digit images, 200 names, 50 texts). "
        "`load` is the machine's 1-minute load average during the runs; "
        "it counts the benchmark's own threads (wrk's and the servers'), so it says how crowded the 2 cores "
        "were, not that other work was running. `CPU ms/request` is the server's CPU time (master and "
        "workers) per request over the runs, and `vs baseline, CPU` the baseline's over this row's: unlike "
        "requests/s, they do not depend on the share of the cores the server got, so they are the ratios to "
        "read when the load column is high. `requests/model call` is read from the server's own "
        "/metrics (`model_serving_batch_size`): above 1, requests were batched. Cold start: the fastest of "
        f"{plan.cold_starts} start(s).",
        "Behaviour under faults (soak, a killed worker, a database restart, shutdown) is in "
        "[RESULTS-resilience.md](RESULTS-resilience.md), made by `python -m bench.resilience`; offline "
        "scoring with Beam in [RESULTS-offline.md](RESULTS-offline.md), made by `python -m bench.offline_scoring`.",
        "",
        markdown_table(rows),
        "",
        "![requests/s and p99 by concurrency](results.png)",
        "",
        "## Targets (issue 13; issue 24's against LitServe and the tutorial; XXXModel's 1.5x from issue 7)",
        "",
        targets_table(rows, measures),
    ]
    served = ", ".join(f"handlers/{stem}.py" for stem in plan.handlers) if plan.handlers else "all of handlers/"
    parts += ["", f"model-serving served {served} in the rows above."]
    info = {k.removeprefix("info:"): v for k, v in notes.items() if k.startswith("info:")}
    if info:
        parts += ["", "Also measured:", ""] + [f"- {name}: {what}" for name, what in info.items()]
    skipped = {k: v for k, v in notes.items() if not k.startswith(("profile:", "info:"))}
    if skipped:
        parts += ["", "Not measured:", ""] + [f"- {name}: {why}" for name, why in skipped.items()]
    for key, summary in notes.items():
        if key.startswith("profile:"):
            parts += ["", f"## Where the time goes: {key.removeprefix('profile:')} under load", "", summary]
    analysis = BENCH_DIR / "NOTES.md"
    if analysis.exists():
        parts += ["", analysis.read_text().rstrip()]
    path = output_dir / "RESULTS.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds: 1 short run, XXXModel only")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per row; the median is kept (default 3)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (default 3)")
    parser.add_argument("--connections", default="16,64", help="comma-separated connection counts (default 16,64)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated models (default all)")
    parser.add_argument(
        "--apps", default=f"{PROJECT},{BASELINE},{LITSERVE}", help="comma-separated apps (default all three)"
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--profile", action="store_true", help="profile a worker of this project with py-spy")
    parser.add_argument("--cold-starts", type=int, default=3, help="starts per app; the fastest is shown (default 3)")
    parser.add_argument("--output-dir", type=Path, default=BENCH_DIR, help="where RESULTS.md goes (default bench/)")
    parser.add_argument(
        "--handlers",
        default="all",
        help="comma-separated handlers/ modules the project serves, or 'all' (default: all, which the "
        "cold-start and memory targets name)",
    )
    args = parser.parse_args(argv)

    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.smoke:
        plan = Plan(["XXXModel"], args.apps.split(","), [4, 16], 1, 1.0, 0.0, args.wrk_threads, False, 1)
    else:
        plan = Plan(
            [w for w in args.workloads.split(",") if w],
            [a for a in args.apps.split(",") if a],
            [int(c) for c in args.connections.split(",")],
            args.runs,
            args.duration,
            args.warmup,
            args.wrk_threads,
            args.profile,
            args.cold_starts,
        )
    plan = dataclasses.replace(
        plan, handlers=() if args.handlers == "all" else tuple(h for h in args.handlers.split(",") if h)
    )
    unknown = [w for w in plan.workloads if w not in WORKLOADS] + [a for a in plan.apps if a not in APPS]
    if unknown:
        parser.error(f"unknown workloads or apps: {', '.join(unknown)}")

    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    machine_line = machine()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        rows, notes, measures = benchmark(plan, Path(scratch), lambda line: print(line, file=sys.stderr, flush=True))
    print(markdown_table(rows))
    print()
    print(targets_table(rows, measures))
    for key, summary in notes.items():
        if key.startswith("profile:"):
            print(f"\nWhere the CPU goes: {key.removeprefix('profile:')}\n\n{summary}")
    path = write_results(rows, notes, command.strip(), args.output_dir, plan, machine_line, measures)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
