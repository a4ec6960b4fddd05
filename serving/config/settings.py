"""Every setting the server reads, parsed from the environment once.

`Settings.from_env()` is the only place that reads `os.environ` for the application;
handlers and models never do. A bad value raises `SettingsError` naming the variable and
the value it got, so a misconfigured deployment fails at start-up instead of at the
first request. `settings_table()` renders the configuration table in docs/configuration.md
(`make settings-table` writes it there), and a test
keeps the two in step.

The fields are declared by concern, one group (a frozen dataclass) each, in the sibling
modules (server, models, platform, jobs, security, artifacts_settings). `Settings`
combines the groups into one flat, frozen object, so code reads `settings.jobs_store`
without knowing which group declared it. `SETTINGS_GROUPS` lists the groups in the
order of the configuration table: `Settings`' bases, top to bottom, as written.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass
from pathlib import Path
from typing import Any

from serving.config.artifacts_settings import ArtifactSettings, OnnxSettings
from serving.config.bigquery import BigQuerySettings
from serving.config.fields import PROJECT_ROOT, SettingsError
from serving.config.jobs import JobsSettings
from serving.config.models import BatchingSettings, CallLimitSettings, ModelSettings
from serving.config.platform import PlatformSettings, VertexSettings
from serving.config.security import SecuritySettings
from serving.config.server import (
    DebugSettings,
    HttpSettings,
    LoggingSettings,
    MetricsSettings,
    PredictionLogSettings,
    ServerSettings,
    UploadSettings,
)

__all__ = ["PROJECT_ROOT", "SETTINGS_GROUPS", "Settings", "SettingsError", "settings_fields", "settings_table"]


# The groups in the configuration table's order, top to bottom: a new group goes where its
# rows should appear. (`SETTINGS_GROUPS` is this list; nothing reads the dataclass's own
# field order, which runs the other way.)
@dataclass(frozen=True)
class Settings(
    ServerSettings,
    ModelSettings,
    HttpSettings,
    UploadSettings,
    LoggingSettings,
    VertexSettings,
    BigQuerySettings,
    JobsSettings,
    PlatformSettings,
    BatchingSettings,
    MetricsSettings,
    SecuritySettings,
    CallLimitSettings,
    OnnxSettings,
    DebugSettings,
    ArtifactSettings,
    PredictionLogSettings,
):
    """The server's configuration: defaults, overridden by environment variables.

    Tests build one directly, e.g. `Settings(handlers_dir=path, model_loading="lazy")`;
    production builds it with `Settings.from_env()`.
    """

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`); unset names keep defaults."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in settings_fields():
            env = spec.metadata["env"]
            raw = source.get(env)
            if raw is None:
                continue
            parse: Callable[[str], Any] = spec.metadata["parse"] or str
            try:
                values[spec.name] = parse(raw)
            except ValueError as exc:
                shown = "<redacted>" if spec.metadata["secret"] else repr(raw)
                raise SettingsError(f"{env}={shown} is not valid: {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Reject combinations of values that are each valid alone but not together."""
        self.check_debug(self.flask_debug)
        self.check_http()
        self.check_vertex()

    @property
    def listen_port(self) -> int:
        """The port the server binds: Vertex AI's `AIP_HTTP_PORT` when set, else `PORT`."""
        return self.aip_http_port if self.aip_http_port is not None else self.port

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (for tests and tools)."""
        return dataclasses.replace(self, **changes)


SETTINGS_GROUPS: tuple[type, ...] = Settings.__bases__


def settings_fields(groups: tuple[type, ...] = SETTINGS_GROUPS) -> list[Field[Any]]:
    """Every setting's field, group by group in `groups`' order (for `SETTINGS_GROUPS`, the table's)."""
    return [spec for group in groups for spec in dataclasses.fields(group)]


def check_groups(combined: type, groups: tuple[type, ...]) -> None:
    """Refuse groups that would lose or hide a setting: one declared twice, or a field `combined` declares itself."""
    seen: dict[str, str] = {}
    for spec in settings_fields(groups):
        env = spec.metadata["env"]
        if spec.name in seen or env in seen.values():
            raise TypeError(f"setting {spec.name} ({env}) is declared by two settings groups")
        seen[spec.name] = env
    own = {spec.name for spec in dataclasses.fields(combined)} - set(seen)
    if own:
        raise TypeError(f"{combined.__name__} declares settings outside its groups: {sorted(own)}")


check_groups(Settings, SETTINGS_GROUPS)


def settings_table() -> str:
    """The configuration table of docs/configuration.md, generated from the groups' fields in order."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for spec in settings_fields():
        default = spec.default
        if isinstance(default, tuple):
            shown = ",".join(default) or "(unset)"  # an empty "``" would open a code span
        elif isinstance(default, Path):
            shown = str(default.relative_to(PROJECT_ROOT)) if default.is_relative_to(PROJECT_ROOT) else str(default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        elif default is None or default == "":
            shown = "(unset)"
        else:
            shown = str(default)
        rows.append(f"| `{spec.metadata['env']}` | `{shown}` | {spec.metadata['doc']} |")
    return "\n".join(rows)
