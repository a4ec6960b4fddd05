"""The widget's asynchronous path in a real browser: 202, "Task Scheduled", polling, outcome.

Against the real job API under gunicorn (SQLite job store, worker threads), from a page
on another origin: a model with `ASYNC = "always"` answers 202 with `Location`, the
widget polls `GET /v1/jobs/<id>` and shows the result or the model's error.

The real jobs finish on their own schedule, so each state the widget shows on the way
(queued, running, and the terminal succeeded, failed, canceled) is also pinned against a
TEST DOUBLE of the same HTTP protocol: `POST /v1/<Model>` answers
`202 {"job_id", "status": "queued", "message": "Task Scheduled"}` with
`Location: /v1/jobs/<id>`, `GET /v1/jobs/<id>` answers the job document, and each job
stays unfinished until the test releases it. The double also serves web/static/.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from serving.http.web import STATIC_DIR
from tests.conftest import FIXTURE_HANDLERS
from tests.servers import ServerProcess, free_port, gunicorn_command, running_server
from tests.web.sites import StaticSite, html_page, serving_static_site

pytestmark = pytest.mark.e2e

MODEL = "Sentiment"
ENTRY = {
    "name": MODEL,
    "description": "Sentiment of a text, as a background job.",
    "version": "1.0",
    "status": "ready",
    "ready": True,
    "async": "always",
    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "output_schema": None,
}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass
class Job:
    text: str
    released: threading.Event = field(default_factory=threading.Event)
    polls: int = 0

    def answer(self, job_id: str) -> dict[str, Any]:
        if not self.released.is_set():
            return {"job_id": job_id, "status": "queued" if self.polls <= 1 else "running"}
        if self.text == "fail":
            return {"job_id": job_id, "status": "failed", "error": {"message": "The model ran out of memory"}}
        if self.text == "cancel":
            return {"job_id": job_id, "status": "canceled"}
        result = {"label": "positive", "probabilities": {"positive": 0.92, "negative": 0.08}}
        return {"job_id": job_id, "status": "succeeded", "result": result}


@dataclass
class JobsApiDouble:
    """The double's state: its jobs by id, and every request path it answered."""

    port: int
    jobs: dict[str, Job] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def only_job(self) -> tuple[str, Job]:
        assert len(self.jobs) == 1
        return next(iter(self.jobs.items()))


def _handler_for(double: JobsApiDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(document).encode(), "application/json", headers)

        def do_GET(self) -> None:
            double.requests.append(f"GET {self.path}")
            if self.path == "/":
                snippet = (
                    '<script type="module" src="/static/widget.js"></script>'
                    f'<div data-model-widget data-model="{MODEL}"></div>'
                )
                self._send(200, html_page("Jobs", snippet).encode(), "text/html; charset=utf-8")
            elif self.path.startswith("/static/") and (STATIC_DIR / self.path[8:]).is_file():
                path = STATIC_DIR / self.path[8:]
                self._send(200, path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
            elif self.path == f"/v1/models/{MODEL}":
                self._json(200, ENTRY)
            elif self.path.startswith("/v1/jobs/") and self.path[9:] in double.jobs:
                job_id = self.path[9:]
                job = double.jobs[job_id]
                job.polls += 1
                self._json(200, job.answer(job_id))
            else:
                self._json(404, {"message": "Not found", "code": "not_found"})

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            double.requests.append(f"POST {self.path}")
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != f"/v1/{MODEL}":
                self._json(404, {"message": "Not found", "code": "not_found"})
                return
            job_id = uuid.uuid4().hex
            double.jobs[job_id] = Job(body["text"])
            accepted = {"job_id": job_id, "status": "queued", "message": "Task Scheduled"}
            self._json(202, accepted, {"Location": f"/v1/jobs/{job_id}"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def double() -> Iterator[JobsApiDouble]:
    state = JobsApiDouble(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", state.port), _handler_for(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="jobs-api-double", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("a lovely day", "Label positive"),
        ("fail", "The model ran out of memory"),
        ("cancel", "The job was canceled before it finished."),
    ],
    ids=["succeeded", "failed", "canceled"],
)
def test_a_job_is_scheduled_polled_and_its_outcome_shown(
    page: Any, page_errors: Any, double: JobsApiDouble, text: str, outcome: str
) -> None:
    from playwright.sync_api import expect

    page.goto(double.url + "/")
    expect(page.locator(".msw-badge-job")).to_have_text("runs as a job")
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Predict").click()

    output = page.locator(".msw-output")
    expect(output).to_contain_text("Task Scheduled")
    expect(output).to_contain_text("is running.")
    job_id, job = double.only_job()
    assert job_id in output.text_content()
    job.released.set()

    expect(output).to_contain_text(outcome)
    expect(output).not_to_contain_text("Task Scheduled")
    polls = [line for line in double.requests if line == f"GET /v1/jobs/{job_id}"]
    assert len(polls) == job.polls >= 3
    assert page_errors.all() == []


def test_a_new_submit_stops_polling_the_previous_job(page: Any, double: JobsApiDouble) -> None:
    from playwright.sync_api import expect

    page.goto(double.url + "/")
    page.get_by_label("Text").fill("first")
    page.get_by_role("button", name="Predict").click()
    expect(page.locator(".msw-output")).to_contain_text("is running.")
    page.get_by_label("Text").fill("second")
    page.get_by_role("button", name="Predict").click()
    expect(page.locator(".msw-output")).to_contain_text("Task Scheduled")

    first, second = (job for job in double.jobs.values())
    polls_of_first = first.polls
    second.released.set()
    expect(page.locator(".msw-output")).to_contain_text("Label positive")
    page.wait_for_timeout(1000)  # longer than the poll interval: a live poller would have asked again

    assert first.polls == polls_of_first


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    with serving_static_site() as static_site:
        yield static_site


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, site: StaticSite) -> Iterator[ServerProcess]:
    port = free_port()
    data_dir = tmp_path_factory.mktemp("jobs")
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "HANDLERS_DIR": str(FIXTURE_HANDLERS / "widget_jobs"),
        "CORS_ORIGINS": site.origin,
        "JOBS_STORE": "sqlite",
        "JOBS_DATA_DIR": str(data_dir),
        "JOBS_WORKERS": "1",
    }
    with running_server(gunicorn_command(), port=port, log_path=data_dir / "gunicorn.log", env=env) as server:
        yield server


@pytest.mark.parametrize(
    ("text", "outcome"),
    [("a lovely day", "Label positive"), ("unreadable scribbles", "The text is unreadable: write it in plain words")],
    ids=["succeeded", "failed"],
)
def test_a_real_job_from_another_origin(
    page: Any, page_errors: Any, api: ServerProcess, site: StaticSite, text: str, outcome: str
) -> None:
    from playwright.sync_api import expect

    site.pages["/reviews.html"] = html_page(
        "Reviews",
        f'<script type="module" src="{api.url}/static/widget.js"></script>'
        f'<div data-model-widget data-endpoint="{api.url}" data-model="Sentiment"></div>',
    )
    page.goto(site.url("/reviews.html"))
    expect(page.locator(".msw-badge-job")).to_have_text("runs as a job")
    page.get_by_label("Text").fill(text)
    page.get_by_label("Seconds").fill("1.5")
    page.get_by_role("button", name="Predict").click()

    output = page.locator(".msw-output")
    expect(output).to_contain_text("Task Scheduled")
    expect(output).to_contain_text(outcome)
    assert page_errors.all() == []
