"""Handler discovery: good modules load, broken ones fail naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.protocols import reserved_names
from serving.runtime.handlers import HandlerError, discover_handlers
from serving.runtime.registry import Registry
from tests.conftest import FIXTURE_HANDLERS


@pytest.mark.parametrize(
    ("case", "expected", "found"),
    [
        ("missing_predict", "a function `predict` taking 2 arguments", "none"),
        ("missing_schema", "INPUT_SCHEMA", "none"),
        ("schema_not_dict", "INPUT_SCHEMA to be a JSON Schema", "a list, not a dict"),
        ("invalid_schema", "INPUT_SCHEMA to be a JSON Schema", "'objekt' is not valid"),
        ("invalid_output_schema", "OUTPUT_SCHEMA to be a JSON Schema", "minimum"),
        ("bad_name", "NAME to be letters", "'a/b'"),
        ("reserved_name", "a NAME other than bigquery, embeddings, jobs, models", "'models'"),
        ("duplicate_name", "a NAME not used by another handler", "'Twin'"),
        ("import_error", "a module that imports cleanly", "ModuleNotFoundError"),
        ("predict_wrong_arity", "`predict` taking 2 positional arguments", "1"),
        ("predict_not_callable", "`predict` to be a function", "str"),
        ("setup_with_args", "`setup` taking 0 positional arguments, or 1 (the artifacts directory)", "2"),
        ("artifacts_without_setup_param", "`setup(artifacts)`", "`setup()` without parameters"),
        ("artifacts_bad_uri", "ARTIFACTS to be gs://BUCKET/PREFIX/", "'s3://some-bucket/model/'"),
        ("artifacts_not_string", "ARTIFACTS to be gs://BUCKET/PREFIX/", "list"),
        ("bad_async", "ASYNC to be one of never, allowed, always", "'sometimes'"),
        ("bad_batch", "BATCH to be a dict", "'max_batch_size': 0"),
        ("bad_version", "VERSION to be a string", "float"),
        ("bad_requires", "REQUIRES to be a tuple of module names", "'torch'"),
        ("bad_timeout", "TIMEOUT_S to be a number of seconds >= 0", "-1"),
    ],
)
def test_broken_handler_is_rejected_with_file_expected_and_found(case: str, expected: str, found: str) -> None:
    with pytest.raises(HandlerError) as info:
        discover_handlers(FIXTURE_HANDLERS / case, reserved_names=reserved_names())

    message = str(info.value)
    assert str(FIXTURE_HANDLERS / case) in message
    assert ".py: expected " in message
    assert expected in message
    assert found in message.split(", found ", 1)[1]


def test_missing_directory_is_rejected(tmp_path: object) -> None:
    with pytest.raises(HandlerError, match="no such directory"):
        discover_handlers(FIXTURE_HANDLERS / "no_such_dir")


def test_good_handlers_load_with_defaults_and_skip_private_modules() -> None:
    specs = {spec.name: spec for spec in discover_handlers(FIXTURE_HANDLERS / "ok")}

    assert "THIS_IS_NOT_A_HANDLER" not in specs
    echo = specs["Echo"]
    assert echo.version == "2.1"
    assert echo.async_mode == "allowed"
    assert echo.predict_batch is None
    assert echo.setup is None
    assert specs["Crashing"].version == "0"
    assert specs["NeedsMissing"].requires == ("a_package_that_is_not_installed_anywhere",)


def test_name_defaults_to_module_name(tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    (directory / "sentiment.py").write_text("INPUT_SCHEMA = {}\ndef predict(model, payload):\n    return 1\n")

    (spec,) = discover_handlers(directory)

    assert spec.name == "sentiment"
    assert spec.description == ""


def test_project_handlers_all_load() -> None:
    from serving.config.settings import Settings

    names = {spec.name for spec in discover_handlers(Settings().handlers_dir)}

    assert "XXXModel" in names


@pytest.mark.parametrize(
    ("raised", "status", "ready"),
    [("ModelUnavailable", "unavailable", True), ("RuntimeError", "failed", False)],
    ids=["unavailable-does-not-block-readiness", "failure-does"],
)
def test_setup_raising_model_unavailable_marks_the_model_unavailable(
    tmp_path: Path, raised: str, status: str, ready: bool
) -> None:
    (tmp_path / "needs_files.py").write_text(
        "from serving.kit import ModelUnavailable\n"
        "INPUT_SCHEMA = {'type': 'object'}\n"
        f"def setup():\n    raise {raised}('model.bin not found here; run make models')\n"
        "def predict(model, payload):\n    return {}\n"
    )
    registry = Registry(discover_handlers(tmp_path))

    assert registry.load_all() is ready
    runtime = registry.get("needs_files")
    assert runtime is not None
    assert runtime.status.value == status
    assert "model.bin not found here; run make models" in (runtime.reason or "")
