"""CPU microseconds per request of the WSGI app alone, without gunicorn, sockets or load.

`python -m bench.wsgi_cost` builds the app as the benchmark runs it (app.yaml's
`env_variables`, `REQUEST_LOG_SAMPLE_RATE=0`, metrics in multiprocess mode as
gunicorn.conf.py sets them up) and calls it directly, `app(environ, start_response)`, for
`--requests` POSTs to `--path` with the benchmark's varied bodies (bench/bodies.py), the
headers wrk sends (Host, Content-Type, Content-Length) and `--header`s of your own, in the
environ gunicorn would make (its connection's socket, here one end of a socket pair, so
the body deadline and the client-gone probe do their per-request work). Each
call is timed with `time.process_time_ns()`; it prints the median request's CPU and the
mean (garbage collection included), each the median of `--rounds` rounds, after a
warm-up. `--app baseline` measures the tutorial-style app (bench/baseline/main.py) the same
way; `--profile` prints cProfile's top functions of one round instead.

On a shared machine two runs a minute apart differ by up to a tenth. To weigh a change,
give each version's tree (`git worktree add`, or `git archive REV | tar -x -C DIR`, with
this file copied in if REV predates it): `--tree OLD --tree .` runs each tree's app in a
process of its own, and the processes take turns, a few hundred requests each, so
whatever else the machine does weighs on both alike; each later tree's line ends with
the median difference from the first tree's, turn by turn.

It measures what one process spends on a request (our Flask app and its pipeline); the
HTTP server's share and the throughput are bench/run.py's.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench import bodies
from bench.run import GOOGLE_REQUEST_LOG, project_env

BODIES: dict[str, Callable[[], list[bytes]]] = {
    "/v1/XXXModel": bodies.greeting_bodies,
    "/v1/Digits": bodies.digit_bodies,
    "/v1/SentenceEmbedding": bodies.sentence_bodies,
}
WARM_UP = 2000
# Requests each tree's process answers before the next one's turn.
TURN = 500

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def project_app() -> WsgiApp:
    """The project's app, in the environment bench/run.py gives its gunicorn."""
    os.environ.update({**project_env(), **GOOGLE_REQUEST_LOG})
    from serving.config.settings import Settings
    from serving.observability.metrics import prepare_multiprocess_dir, remove_private_dir

    settings = Settings.from_env()
    if settings.metrics:
        # What gunicorn.conf.py does before the app is loaded, and at exit.
        directory, private = prepare_multiprocess_dir(settings.metrics_dir)
        if private:
            atexit.register(remove_private_dir, directory)
    from serving.app import create_app

    return create_app()


def baseline_app() -> WsgiApp:
    """The tutorial-style app the benchmark compares with."""
    from bench.baseline.main import app

    return app


class Requests:
    """WSGI environs POSTing the bodies in turn, each with its own unread body, as gunicorn makes them."""

    def __init__(self, path: str, payloads: list[bytes], headers: dict[str, str]) -> None:
        from werkzeug.test import EnvironBuilder

        # Never read nor written: what the app does with it is what it does per request.
        self._connection, self._client = socket.socketpair()
        gunicorn = {
            "gunicorn.socket": self._connection,
            "wsgi.input_terminated": True,
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "50000",
            "SERVER_SOFTWARE": "gunicorn",
        }
        self._templates = []
        for body in payloads:
            builder = EnvironBuilder(
                path=path,
                method="POST",
                data=body,
                content_type="application/json",
                base_url="http://127.0.0.1:8080",
                headers=list(headers.items()),
            )
            self._templates.append(({**builder.get_environ(), **gunicorn}, body))
            builder.close()
        self._next = 0

    def take(self, count: int) -> list[dict[str, Any]]:
        """The next `count` environs."""
        taken = []
        for _ in range(count):
            environ, body = self._templates[self._next % len(self._templates)]
            self._next += 1
            taken.append({**environ, "wsgi.input": io.BytesIO(body)})
        return taken


def timed_calls(app: WsgiApp, environs: list[dict[str, Any]]) -> list[int]:
    """Call `app` with each environ in turn: each call's CPU nanoseconds (body read and closed)."""
    clock = time.process_time_ns

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"the app answered {status}")

    times = []
    for environ in environs:
        started = clock()
        answer = app(environ, start_response)
        for _ in answer:
            pass
        close = getattr(answer, "close", None)
        if close is not None:
            close()
        times.append(clock() - started)
    return times


def summary(rounds: list[list[int]]) -> str:
    """`median request X us, mean Y us`: each the median over the rounds, with the rounds' spread."""
    medians = sorted(statistics.median(times) / 1000 for times in rounds)
    means = sorted(statistics.fmean(times) / 1000 for times in rounds)
    return (
        f"median request {statistics.median(medians):.1f} us (rounds {medians[0]:.1f}-{medians[-1]:.1f}), "
        f"mean {statistics.median(means):.1f} us (rounds {means[0]:.1f}-{means[-1]:.1f})"
    )


def _worker(app: WsgiApp, requests: Requests) -> None:
    """Answer `N` lines on stdin with the CPU times of the next N requests, as JSON lines."""
    for line in sys.stdin:
        times = timed_calls(app, requests.take(int(line)))
        print(json.dumps(times), flush=True)


def compare(trees: list[Path], worker_args: list[str], requests: int, rounds: int) -> None:
    """Each tree's app in its own process, the processes taking turns; a summary per tree."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.wsgi_cost", "--worker", *worker_args],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tree in trees
    ]
    results: list[list[list[int]]] = [[] for _ in trees]
    # Each turn's median request, per tree: compared turn by turn with the first tree's.
    turns: list[list[float]] = [[] for _ in trees]
    try:
        for round_number in range(rounds):
            for times in results:
                times.append([])
            for turn in range(0, requests, TURN):
                # Each round starts with another tree, so none always goes first.
                for index in range(len(workers)):
                    which = (index + round_number + turn // TURN) % len(workers)
                    pipe_in, pipe_out = workers[which].stdin, workers[which].stdout
                    if pipe_in is None or pipe_out is None:
                        raise RuntimeError("no pipe to the measuring process")
                    pipe_in.write(f"{min(TURN, requests - turn)}\n")
                    pipe_in.flush()
                    line = pipe_out.readline()
                    if not line:
                        raise RuntimeError(f"the process measuring {trees[which]} ended (exit {workers[which].wait()})")
                    times = json.loads(line)
                    results[which][-1].extend(times)
                    turns[which].append(statistics.median(times) / 1000)
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait()
    for index, (tree, tree_rounds) in enumerate(zip(trees, results, strict=True)):
        line = f"{tree}: {summary(tree_rounds)}; {rounds} rounds of {requests} requests, taking turns"
        if index:
            # The same turn's requests met the same machine: the difference is the version's.
            differences = [ours - first for ours, first in zip(turns[index], turns[0], strict=True)]
            line += f"; against {trees[0]}, turn by turn: {statistics.median(differences):+.1f} us"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--app", choices=("project", "baseline"), default="project")
    parser.add_argument("--path", default="/v1/XXXModel", choices=sorted(BODIES))
    parser.add_argument("--requests", type=int, default=20_000, help="per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--header", action="append", default=[], help="`Name: value`, sent with every request")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of one round")
    parser.add_argument("--tree", action="append", type=Path, default=[], help="a project tree to measure, in turns")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    headers = {name.strip(): value.strip() for name, _, value in (line.partition(":") for line in args.header)}

    if args.tree:
        worker_args = ["--app", args.app, "--path", args.path, *(f"--header={line}" for line in args.header)]
        compare([tree.resolve() for tree in args.tree], worker_args, args.requests, args.rounds)
        return 0
    app = project_app() if args.app == "project" else baseline_app()
    requests = Requests(args.path, BODIES[args.path](), headers)
    timed_calls(app, requests.take(WARM_UP))
    if args.worker:
        _worker(app, requests)
        return 0
    if args.profile:
        environs = requests.take(args.requests)
        profiler = cProfile.Profile()
        profiler.enable()
        timed_calls(app, environs)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(40)
        return 0
    rounds = [timed_calls(app, requests.take(args.requests)) for _ in range(args.rounds)]
    print(f"{args.app} POST {args.path}: {summary(rounds)}; {args.rounds} rounds of {args.requests} requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
