"""Where a request's CPU goes: py-spy samples of a worker, sorted into the request's steps.

`bench/run.py --profile` drives one worker (`GUNICORN_WORKERS=1`) with wrk, samples the
thread holding the GIL with py-spy (`--gil`: sampling every running thread counted threads
woken and waiting for a core of the loaded machine as busy), and measures the worker's CPU
time and the requests it answered over the same seconds. `step_costs` sorts each sample into one
stage of a request (`STAGES`: gunicorn's parsing and sending, Flask's dispatch, each
pipeline step of serving/http/pipeline.py, reading and validating the body, decoding the
image, the model, encoding the answer) and `step_costs_table` turns the shares into
microseconds per request: the table the benchmark prints, so the next person sees what each
step costs.

A sample belongs to the first stage, walking its stack from the outermost frame in, whose
pattern matches a frame and which is `final`; a non-final stage (Flask's dispatch, the
connection loop) holds the samples no deeper stage claims. So the JSON encoding inside the
request log's line counts as the request log, and the JSON encoding of the answer as
encoding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """A part of a request's work, found by substrings of py-spy's frames ("function (path:line)")."""

    name: str
    patterns: tuple[str, ...]
    final: bool = True

    def matches(self, frame: str) -> bool:
        return any(pattern in frame for pattern in self.patterns)


# Ordered: where two stages match one frame the first wins.
STAGES: tuple[Stage, ...] = (
    Stage("step request-log (id, trace, log line)", ("serving/observability/logs.py", "observability/log_format.py")),
    Stage("step preflight-204", ("preflight_no_content",)),
    Stage("step metrics", ("serving/observability/metrics.py", "prometheus_client/")),
    Stage("step prediction-log", ("serving/observability/prediction_log.py",)),
    Stage("step model-version", ("serving/http/model_version.py",)),
    Stage("steps identify-key, enforce-key", ("serving/security/access.py",)),
    Stage("step rate-limit", ("flask_limiter/", "serving/security/ratelimits.py", "limits/")),
    Stage("step security-headers", ("serving/security/hardening.py",)),
    Stage("step cors", ("flask_cors/", "serving/http/cors.py")),
    Stage("decode + preprocess (image)", ("models/digits/image.py", "PIL/")),
    Stage("model", ("onnxruntime/", "serving/runtime/onnx.py", "models/onnx_classifier.py", "models/greeter.py")),
    Stage("validate input/output", ("serving/runtime/validation.py", "jsonschema", "serving/runtime/rows.py")),
    Stage(
        "read + parse body (JSON)",
        ("serving/http/body.py", "serving/http/payload.py", "get_json", "json/decoder.py"),
    ),
    Stage("encode answer (JSON)", ("serving/http/json_provider.py", "json/encoder.py", "orjson")),
    Stage(
        "gunicorn: parse request",
        ("gunicorn/http/message.py", "gunicorn/http/parser.py", "gunicorn/http/unreader.py", "gunicorn/http/body.py"),
    ),
    Stage(
        "gunicorn: send response",
        ("send_headers", "_emit_body", "serving/platform/gunicorn_response.py", "gunicorn/util.py", "sendall"),
    ),
    Stage("other logging", ("logging/__init__.py",)),
    Stage("batching, time budget", ("serving/runtime/batching.py", "serving/runtime/timebudget.py"), final=False),
    Stage("view (native protocol, inference)", ("serving/protocols/", "serving/runtime/inference.py"), final=False),
    Stage("Flask + Werkzeug dispatch", ("flask/", "werkzeug/"), final=False),
    Stage("gunicorn: connection loop, environ", ("gunicorn/",), final=False),
)
OTHER = "other (interpreter, threads, GC)"


def classify(frames: Iterable[str]) -> str:
    """The stage of one sample, its frames listed from the outermost in."""
    found = OTHER
    for frame in frames:
        for stage in STAGES:
            if stage.matches(frame):
                if stage.final:
                    return stage.name
                found = stage.name
                break
    return found


def step_costs(collapsed: str) -> tuple[Counter[str], int]:
    """Samples per stage, and the total, from py-spy's raw (collapsed) output."""
    costs: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        costs[classify(stack.split(";"))] += int(count)
        total += int(count)
    return costs, total


def step_costs_table(collapsed: str, *, rate_hz: float, requests: float, cpu_s: float) -> str:
    """Markdown: each stage's share of the GIL samples and its microseconds per request.

    `collapsed` holds py-spy `--gil` samples taken at `rate_hz` while the worker answered
    `requests` requests and used `cpu_s` seconds of CPU. A sample is a moment some thread
    held the GIL, so samples / rate is the time Python code ran; the worker's CPU beyond
    that ran outside the GIL (ONNX Runtime's threads, the kernel's socket work in `send`,
    Pillow's decoders), shown as its own line.
    """
    costs, total = step_costs(collapsed)
    if not total or requests <= 0:
        return "(no samples)"
    gil_us = 1e6 * total / rate_hz / requests
    cpu_us = 1e6 * cpu_s / requests
    lines = ["| stage | share of GIL time | us/request |", "| --- | ---: | ---: |"]
    order = [stage.name for stage in STAGES] + [OTHER]
    for name in sorted(order, key=lambda n: -costs[n]):
        if costs[name]:
            share = costs[name] / total
            lines.append(f"| {name} | {100 * share:.1f}% | {share * gil_us:.0f} |")
    lines.append(f"| **Python code (GIL held)** | 100% | **{gil_us:.0f}** |")
    lines.append(f"| outside the GIL (native threads, syscalls) | | {max(0.0, cpu_us - gil_us):.0f} |")
    lines.append(f"| **worker CPU (utime + stime)** | | **{cpu_us:.0f}** |")
    return (
        "\n".join(lines)
        + f"\n\n{total} py-spy samples (`--gil`, {rate_hz:g} Hz) over {requests:.0f} requests. On a loaded machine "
        "a thread can hold the GIL while it waits for a core, which inflates the GIL time; the shares still "
        "say where Python's time goes."
    )
