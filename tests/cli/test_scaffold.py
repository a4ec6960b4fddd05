"""`flask --app main new-model <Name>`: files that pass their own tests, and no overwriting."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from serving.cli.new_model import module_name, name_problem, scaffold_files
from tests.scaffolding import run_in_copy
from tests.servers import VENV_BIN


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("ImageTagger", "image_tagger"),
        ("XXXModel", "xxx_model"),
        ("SentenceEmbedding", "sentence_embedding"),
        ("Iris", "iris"),
        ("iris2", "iris2"),
        ("HTTPStatus2Label", "http_status2_label"),
    ],
)
def test_module_name_is_snake_case(name: str, module: str) -> None:
    assert module_name(name) == module


@pytest.mark.parametrize(
    ("name", "problem_part"),
    [
        pytest.param("Image-Tagger", "letters and digits", id="dash"),
        pytest.param("2Fast", "starting with a letter", id="leading-digit"),
        pytest.param("", "letters and digits", id="empty"),
        pytest.param("A" * 33, "at most 32", id="too-long"),
        pytest.param("Models", "used by the API's own routes", id="reserved"),
        pytest.param("Class", "Python keyword", id="keyword"),
        pytest.param("XXXModel", "already served", id="taken"),
        pytest.param("Ünïcode", "letters and digits", id="non-ascii"),
    ],
)
def test_names_that_cannot_be_used(name: str, problem_part: str) -> None:
    problem = name_problem(name, {"XXXModel"})

    assert problem is not None
    assert problem_part in problem


def test_generated_files_compile(tmp_path: Path) -> None:
    for path, text in scaffold_files("ImageTagger", tmp_path).items():
        compile(text, str(path), "exec")
        assert "ImageTagger" in text


def _new_model(copy: Path, name: str) -> subprocess.CompletedProcess[str]:
    return run_in_copy([str(VENV_BIN / "flask"), "--app", "main", "new-model", name], copy)


@pytest.mark.e2e
def test_flask_new_model_writes_files_whose_tests_pass(project_copy: Path) -> None:
    result = _new_model(project_copy, "ImageTagger")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # a command prints its result and errors, no log records
    written = [
        project_copy / "handlers" / "image_tagger.py",
        project_copy / "models" / "image_tagger.py",
        project_copy / "tests" / "handlers" / "test_image_tagger.py",
    ]
    for path in written:
        assert path.is_file()
        assert f"wrote {path}" in result.stdout
    # The generated tests, and the contract test over the new handler (with a real gunicorn).
    selected = ["tests/handlers/test_image_tagger.py", "tests/handlers/test_handler_contract.py", "-k", "image_tagger"]
    tests = run_in_copy([str(VENV_BIN / "python"), "-m", "pytest", "-q", *selected], project_copy)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout
    assert "failed" not in tests.stdout
    assert "skipped" not in tests.stdout
    # The project's `make test` lints everything, the new files included.
    relative = [str(path.relative_to(project_copy)) for path in written]
    lint = run_in_copy([str(VENV_BIN / "ruff"), "check", *relative], project_copy)
    formatted = run_in_copy([str(VENV_BIN / "ruff"), "format", "--check", *relative], project_copy)
    assert lint.returncode == 0, lint.stdout
    assert formatted.returncode == 0, formatted.stdout


@pytest.mark.e2e
def test_flask_new_model_refuses_to_overwrite(project_copy: Path) -> None:
    model = project_copy / "models" / "image_tagger.py"
    model.write_text("# the user's own work\n")

    result = _new_model(project_copy, "ImageTagger")

    assert result.returncode != 0
    assert f"refusing to overwrite {model}; nothing was written" in result.stderr
    assert model.read_text() == "# the user's own work\n"
    assert not (project_copy / "handlers" / "image_tagger.py").exists()
    assert not (project_copy / "tests" / "handlers" / "test_image_tagger.py").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("XXXModel", "a model named 'XXXModel' is already served", id="served-name"),
        pytest.param("bad name", "letters and digits", id="bad-name"),
    ],
)
def test_cli_rejects_unusable_names_and_writes_nothing(
    make_app: Callable[..., Flask], tmp_path: Path, name: str, message: str
) -> None:
    runner = make_app(model_loading="lazy").test_cli_runner()

    result = runner.invoke(args=["new-model", name, "--directory", str(tmp_path)])

    assert result.exit_code == 1
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_into_the_given_directory(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    runner = make_app(model_loading="lazy").test_cli_runner()

    first = runner.invoke(args=["new-model", "Summarizer", "--directory", str(tmp_path)])
    second = runner.invoke(args=["new-model", "Summarizer", "--directory", str(tmp_path)])

    assert first.exit_code == 0, first.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py")) == [
        "handlers/summarizer.py",
        "models/summarizer.py",
        "tests/handlers/test_summarizer.py",
    ]
    assert second.exit_code == 1
    assert "refusing to overwrite" in second.output
