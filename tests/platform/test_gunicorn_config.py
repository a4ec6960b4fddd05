"""gunicorn's settings as a worker reads them: the same values as gunicorn's own `Config`."""

from __future__ import annotations

from typing import Any

import pytest
from gunicorn.config import Config

from serving.platform.gunicorn_config import ResolvedConfig


def _config(*args: str) -> Any:
    """gunicorn's Config with `args` from its command line."""
    config = Config()
    parsed = config.parser().parse_args([*args, "main:app"])
    for name, value in vars(parsed).items():
        if value is not None and name in config.settings:
            config.set(name.lower(), value)
    return config


@pytest.mark.parametrize(
    "args",
    [(), ("--keyfile", "/k.pem", "--certfile", "/c.pem"), ("--forwarded-allow-ips", "10.0.0.0/8", "--keep-alive", "9")],
)
def test_every_setting_reads_as_gunicorns_config_reads_it(args: tuple[str, ...]) -> None:
    config = _config(*args)
    resolved = ResolvedConfig(config)

    for name in config.settings:
        assert getattr(resolved, name) == getattr(config, name), name
    assert bool(resolved.is_ssl) is bool(config.is_ssl) is bool(args and args[0] == "--keyfile")
    # Computed values and methods come from gunicorn's Config itself.
    assert resolved.worker_class is config.worker_class
    assert resolved.forwarded_allow_networks() == config.forwarded_allow_networks()
    assert resolved.address == config.address


def test_an_unknown_name_is_refused_as_gunicorns_config_refuses_it() -> None:
    with pytest.raises(AttributeError, match="No configuration setting for: no_such_setting"):
        _ = ResolvedConfig(Config()).no_such_setting


def test_the_settings_are_plain_attributes() -> None:
    resolved = ResolvedConfig(Config())
    assert {"keepalive", "pre_request", "limit_request_line"} <= vars(resolved).keys()
