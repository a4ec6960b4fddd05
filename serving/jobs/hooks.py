"""gunicorn's hooks for the job pool: start it in each worker after the fork, stop it at exit.

gunicorn.conf.py calls these from `post_worker_init` and `worker_exit`; they find the app's
`JobService` on the WSGI app gunicorn loaded, and do nothing when jobs are off.
"""

from __future__ import annotations

from typing import Any

from serving.jobs.service import EXTENSION_KEY, JobService


def start_background_jobs(wsgi: Any) -> None:
    """gunicorn `post_worker_init` hook: start the job pool of this worker process."""
    service = _service_of(wsgi)
    if service is not None:
        service.start()


def stop_background_jobs(wsgi: Any, timeout_s: float) -> None:
    """gunicorn `worker_exit` hook: let running jobs finish within `timeout_s`."""
    service = _service_of(wsgi)
    if service is not None:
        service.stop(timeout_s)


def _service_of(wsgi: Any) -> JobService | None:
    extensions = getattr(wsgi, "extensions", None)
    if not isinstance(extensions, dict):
        return None
    service = extensions.get(EXTENSION_KEY)
    return service if isinstance(service, JobService) else None
