"""gunicorn's settings read once per worker, so that a request's many reads cost nothing.

Every attribute of gunicorn's `Config` is resolved on each read, through `__getattr__`
and the setting's `get()`: 0.4 us a read. A worker reads about twenty for every request
(`keepalive` twice, the parser's limits and flags, `is_ssl`, `pre_request`,
`post_request`, ...), counted with a wrapped `Config` under load: some 9 us of a small
request's 220 (bench/NOTES.md). `ResolvedConfig` keeps each setting's value as a plain
attribute, read once when the worker starts, and hands every other read (the properties
gunicorn computes, such as `worker_class`, and its methods) to the real `Config`.

A worker's settings do not change while it runs (a reload, SIGHUP, starts new workers
with a new `Config`). Hand-written because gunicorn has no such option.
"""

from __future__ import annotations

from typing import Any


class ResolvedConfig:
    """gunicorn's `config` for one worker: setting values as plain attributes, the rest from `config`."""

    def __init__(self, config: Any) -> None:
        computed = {name for name in dir(type(config)) if isinstance(getattr(type(config), name), property)}
        values = {name: setting.get() for name, setting in config.settings.items() if name not in computed}
        self.__dict__.update(values)
        # The one computed value of the request path (`certfile or keyfile`).
        self.__dict__["is_ssl"] = config.is_ssl
        self.__dict__["_config"] = config

    def __getattr__(self, name: str) -> Any:
        # Only for what `__init__` did not copy: computed values, methods, `settings`.
        return getattr(self.__dict__["_config"], name)
