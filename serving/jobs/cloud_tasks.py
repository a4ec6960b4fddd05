"""The `cloud-tasks` dispatcher: one Cloud Tasks task per job, delivered back to this service.

On App Engine and Cloud Run an instance only has CPU while it serves a request (Cloud Run
throttles a thread that runs after the response to a crawl), so background threads are
the wrong place for model work. Instead, a submit enqueues an HTTP task whose target is
`POST /internal/jobs/<id>/run` on this same service; Cloud Tasks delivers it (retrying
with backoff until it gets a 2xx) and the job runs inside that request.

Only the queue may call the run endpoint (`QueueCaller.verify`):

- `JOBS_TASKS_TARGET=app_engine`: App Engine removes `X-AppEngine-*` headers from requests
  that come from outside, so the header `X-AppEngine-QueueName` naming our queue proves the
  caller. Trusted only when the app runs on App Engine (`GAE_ENV=standard`): anywhere else
  anyone could send that header.
- `JOBS_TASKS_TARGET=http` (Cloud Run): the task carries an OIDC token that Google signs for
  `JOBS_TASKS_SERVICE_ACCOUNT`; the endpoint verifies signature, expiry, issuer, audience
  and that account's e-mail.

Everything else gets 403.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
from typing import Any

from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import tasks_v2

from serving.jobs.records import Job
from serving.security.google_tokens import GoogleCertificates, TokenRejected, bearer_token, verified_claims

log = logging.getLogger("serving.jobs.cloud_tasks")

RUN_PATH = "/internal/jobs/{job_id}/run"
WEBHOOK_PATH = "/internal/jobs/{job_id}/webhook"
# Cloud Tasks allows HTTP tasks at most 30 minutes of dispatch deadline.
_MAX_DEADLINE_S = 1800


class DispatchError(Exception):
    """Cloud Tasks refused or could not be reached; the message says which."""


class CloudTasksDispatcher:
    """Enqueues run and webhook tasks; one per process, clients created after the fork."""

    def __init__(
        self,
        *,
        queue: str,
        target: str,
        base_url: str,
        service_account: str,
        audience: str,
        app_engine_service: str,
        deadline_s: float,
        emulator_host: str,
    ) -> None:
        self.queue = queue
        self.target = target
        self.base_url = base_url
        self.service_account = service_account
        self.audience = audience
        self.app_engine_service = app_engine_service
        self.deadline_s = min(max(int(deadline_s) + 60, 15), _MAX_DEADLINE_S)
        self.emulator_host = emulator_host
        self._client: tasks_v2.CloudTasksClient | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _tasks(self) -> tasks_v2.CloudTasksClient:
        # gRPC channels do not survive fork(): each process makes its own client, lazily.
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._new_client()
                self._pid = os.getpid()
            return self._client

    def _new_client(self) -> tasks_v2.CloudTasksClient:
        if self.emulator_host:
            import grpc  # type: ignore[import-untyped]
            from google.auth.credentials import AnonymousCredentials
            from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

            channel = grpc.insecure_channel(self.emulator_host)
            return tasks_v2.CloudTasksClient(
                transport=CloudTasksGrpcTransport(channel=channel, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
            )
        # REST keeps gRPC's threads out of the gunicorn processes altogether.
        return tasks_v2.CloudTasksClient(transport="rest")

    def enqueue_run(self, job: Job) -> None:
        """Enqueue the task that runs `job` (named after it, so a repeat is a no-op)."""
        self._enqueue(RUN_PATH.format(job_id=job.id), name=f"job-{job.id}", delay_s=0.0)

    def enqueue_webhook(self, job: Job, delay_s: float) -> None:
        """Enqueue a webhook delivery attempt for `job`, due in `delay_s` seconds."""
        self._enqueue(WEBHOOK_PATH.format(job_id=job.id), name=None, delay_s=delay_s)

    def _enqueue(self, path: str, *, name: str | None, delay_s: float) -> None:
        task = tasks_v2.Task(dispatch_deadline=datetime.timedelta(seconds=self.deadline_s))
        body = json.dumps({"path": path}).encode()
        if self.target == "app_engine":
            routing = tasks_v2.AppEngineRouting(service=self.app_engine_service) if self.app_engine_service else None
            task.app_engine_http_request = tasks_v2.AppEngineHttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                relative_uri=path,
                app_engine_routing=routing,
                headers={"Content-Type": "application/json"},
                body=body,
            )
        else:
            task.http_request = tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                url=self.base_url + path,
                headers={"Content-Type": "application/json"},
                body=body,
                oidc_token=tasks_v2.OidcToken(service_account_email=self.service_account, audience=self.audience),
            )
        if name is not None:
            task.name = f"{self.queue}/tasks/{name}"
        if delay_s > 0:
            task.schedule_time = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=delay_s)
        try:
            self._tasks().create_task(request=tasks_v2.CreateTaskRequest(parent=self.queue, task=task), timeout=10.0)
        except google_exceptions.AlreadyExists:
            return  # enqueued before (a retried dispatch): one task is enough
        except (google_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as exc:
            raise DispatchError(f"Cloud Tasks did not take the task for {path}: {exc}") from exc


class QueueCaller:
    """Decides whether a request to an internal endpoint comes from our Cloud Tasks queue."""

    def __init__(
        self,
        *,
        target: str,
        queue: str,
        on_app_engine: bool,
        service_account: str,
        audience: str,
        certs_url: str,
    ) -> None:
        self.target = target
        self.queue = queue
        self.queue_id = queue.rsplit("/", 1)[-1]
        self.on_app_engine = on_app_engine
        self.service_account = service_account
        self.audience = audience
        self._certs = GoogleCertificates(certs_url)

    def verify(self, headers: Any) -> str | None:
        """None when the caller is the queue; otherwise the reason it is refused (for the log)."""
        if self.target == "app_engine":
            if not self.on_app_engine:
                return "X-AppEngine-QueueName is trusted only on App Engine"
            name = headers.get("X-AppEngine-QueueName", "")
            if name in (self.queue_id, self.queue):
                return None
            return "no X-AppEngine-QueueName header naming the job queue"
        token = bearer_token(headers.get("Authorization", ""))
        if token is None:
            return "no bearer token"
        try:
            claims = verified_claims(token, self._certs, self.audience)
        except TokenRejected as exc:
            return str(exc)
        if claims["email"] != self.service_account:
            return "the ID token is not the queue's service account"
        return None
