"""Settings: defaults, parsing from the environment, errors naming the variable, the docs' table."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serving.config.fields import setting
from serving.config.settings import (
    PROJECT_ROOT,
    SETTINGS_GROUPS,
    Settings,
    SettingsError,
    check_groups,
    settings_table,
)


def test_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.port == 8080
    assert settings.cors_origins == ("*",)
    assert settings.max_request_bytes == 30 * 1024 * 1024
    assert settings.handlers_dir == PROJECT_ROOT / "handlers"


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"PORT": "9999"}, "port", 9999),
        (
            {"CORS_ORIGINS": "https://a.example, https://b.example"},
            "cors_origins",
            ("https://a.example", "https://b.example"),
        ),
        ({"GUNICORN_WORKERS": "4"}, "workers", 4),
        ({"GUNICORN_THREADS": "16"}, "threads", 16),
        ({"GUNICORN_TIMEOUT": "120"}, "timeout_s", 120),
        ({"MAX_REQUEST_BYTES": "1048576"}, "max_request_bytes", 1048576),
        ({"LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
        ({"LOG_FORMAT": "TEXT"}, "log_format", "text"),
        ({"MODEL_LOADING": "lazy"}, "model_loading", "lazy"),
        ({"VALIDATE_OUTPUT": "off"}, "validate_output", False),
        ({"HANDLERS_DIR": "tests/fixtures/handlers/ok"}, "handlers_dir", PROJECT_ROOT / "tests/fixtures/handlers/ok"),
        ({"HANDLERS_DIR": "/srv/handlers"}, "handlers_dir", Path("/srv/handlers")),
    ],
)
def test_values_from_environment(env: dict[str, str], field: str, value: Any) -> None:
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "eighty"}, "PORT='eighty'"),
        ({"PORT": "70000"}, "PORT='70000' is not valid: expected an integer from 1 to 65535"),
        ({"GUNICORN_WORKERS": "0"}, "GUNICORN_WORKERS='0'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud'"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is not valid: expected one of auto, gcp, json, text"),
        ({"MODEL_LOADING": "sometimes"}, "MODEL_LOADING='sometimes'"),
        ({"VALIDATE_OUTPUT": "maybe"}, "VALIDATE_OUTPUT='maybe'"),
        ({"MAX_REQUEST_BYTES": "12"}, "MAX_REQUEST_BYTES='12'"),
        ({"CORS_ORIGINS": "*,https://a.example"}, "CORS_ORIGINS='*,https://a.example'"),
    ],
)
def test_bad_values_name_the_variable_and_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)

    assert message in str(info.value)


def test_every_field_names_an_environment_variable_and_a_doc() -> None:
    for spec in dataclasses.fields(Settings):
        assert spec.metadata["env"].isupper()
        assert spec.metadata["doc"]


def test_the_table_runs_group_by_group_in_the_order_the_groups_are_listed() -> None:
    rows = [line.split("`")[1] for line in settings_table().splitlines()[2:]]
    expected = [spec.metadata["env"] for group in SETTINGS_GROUPS for spec in dataclasses.fields(group)]

    assert rows == expected
    assert SETTINGS_GROUPS[0].__name__ == "ServerSettings"  # `HOST` and `PORT` open the table
    assert rows[:2] == ["HOST", "PORT"]


@dataclasses.dataclass(frozen=True)
class _First:
    alpha: int = setting("ALPHA", 1, "First.")


@dataclasses.dataclass(frozen=True)
class _Again:
    beta: int = setting("ALPHA", 2, "The same variable again.")


@dataclasses.dataclass(frozen=True)
class _Combined(_First, _Again):
    gamma: int = setting("GAMMA", 3, "Declared outside any group.")


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ((_First, _Again), "declared by two settings groups"),
        ((_First,), r"_Combined declares settings outside its groups: \['beta', 'gamma'\]"),
    ],
    ids=["same-variable-twice", "field-outside-groups"],
)
def test_settings_groups_that_would_lose_a_setting_are_refused(groups: tuple[type, ...], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        check_groups(_Combined, groups)


def test_docs_configuration_table_is_current() -> None:
    page = (PROJECT_ROOT / "docs" / "configuration.md").read_text()

    assert settings_table() in page, "docs/configuration.md's settings table is stale: run `make settings-table`"


def test_settings_table_command_rewrites_only_the_table(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    before = "# Configuration\n\nIntro.\n\n<!-- settings-table: generated -->\n"
    after = "\n<!-- /settings-table -->\n\nOutro.\n"
    page.write_text(before + "\n| Variable | Default | Meaning |\n| `OLD` | `1` | Gone. |\n" + after)

    first = subprocess.run(
        [sys.executable, "bin/settings-table", "--page", str(page)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    rewritten = page.read_text()
    second = subprocess.run(
        [sys.executable, "bin/settings-table", "--page", str(page)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )

    assert first.returncode == 0, first.stderr
    assert rewritten == before + "\n" + settings_table() + "\n" + after
    assert "already current" in second.stdout
    assert page.read_text() == rewritten


def test_settings_table_command_refuses_a_page_without_its_markers(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# Configuration\n")

    result = subprocess.run(
        [sys.executable, "bin/settings-table", "--page", str(page)], cwd=PROJECT_ROOT, capture_output=True, text=True
    )

    assert result.returncode == 1
    assert "found 0" in result.stderr
    assert page.read_text() == "# Configuration\n"
