"""The handler contract, checked for every module in handlers/ (new ones included).

For each handler: importing it has no side effects (no heavy or HTTP modules, no output,
no threads, no files, no environment reads); it declares its description, name, version
and functions with the signatures the core calls; its schemas are valid draft 2020-12 and
its examples match them; in process, each example's result matches OUTPUT_SCHEMA and
`predict_batch` agrees with `predict`; /openapi.json documents it; and each example
succeeds over HTTP on a real gunicorn, one by one and as a batch. A model whose packages
are missing is skipped with the reason.

This is the one contract test: the scaffolding test (tests/cli/test_scaffold.py) runs it on a
newly generated handler too, so it needs nothing beyond tests/conftest.py and
tests/servers.py.
"""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from serving.app import create_app
from serving.config.settings import Settings
from serving.runtime.handlers import NAME_PATTERN, ModelSpec, load_handler
from tests.servers import PROJECT_ROOT, ServerProcess, base_env, free_port, gunicorn_command, running_server

HANDLERS_DIR = PROJECT_ROOT / "handlers"
HANDLER_FILES = sorted(path for path in HANDLERS_DIR.glob("*.py") if not path.name.startswith("_"))
# Importing a handler must stay cheap: the registry imports every handler at start-up,
# including those whose packages are missing. Heavy libraries belong in setup().
HEAVY_PACKAGES = frozenset(
    {"torch", "tensorflow", "jax", "sklearn", "scipy", "pandas", "PIL", "skops", "transformers",
     "sentence_transformers", "onnxruntime"}
)  # fmt: skip
# Handlers know nothing of HTTP: the core owns requests and responses.
HTTP_PACKAGES = frozenset({"flask", "werkzeug", "requests", "flask_cors", "gunicorn"})
# Handlers whose INPUT_SCHEMA may accept keys it does not name, and why.
OPEN_INPUT_SCHEMAS = {"xxx_model": "the tutorial's model answers any object with a `name`, as the original did"}

handler_params = pytest.mark.parametrize("path", HANDLER_FILES, ids=[path.stem for path in HANDLER_FILES])

_IMPORT_PROBE = """
import contextlib, io, json, os, sys, threading
project, handler = sys.argv[1], sys.argv[2]
sys.path.insert(0, project)
from serving.runtime.handlers import load_handler

reads = []
watched = (os.path.join(project, "handlers"), os.path.join(project, "models"))

class Watched(dict):
    def _note(self, key):
        # The reader, or the reader of os.getenv: a library's own reads do not count.
        callers = (sys._getframe(2), sys._getframe(2).f_back)
        if any(f is not None and f.f_code.co_filename.startswith(watched) for f in callers):
            reads.append(key)
    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)
    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)

before = set(sys.modules)
threads = threading.active_count()
os.environ = Watched(os.environ)
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    load_handler(__import__("pathlib").Path(handler))
print(json.dumps({
    "modules": sorted(set(sys.modules) - before),
    "new_threads": threading.active_count() - threads,
    "output": out.getvalue() + err.getvalue(),
    "env_reads": reads,
}))
"""


@pytest.mark.e2e
@handler_params
def test_import_has_no_side_effects(path: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, str(PROJECT_ROOT), str(path)],
        cwd=tmp_path,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])

    heavy = sorted({m.split(".")[0] for m in probe["modules"]} & HEAVY_PACKAGES)
    assert heavy == [], f"{path.name} imports {heavy} at import time; import them in setup() instead"
    assert probe["new_threads"] == 0
    assert probe["output"] == ""
    assert probe["env_reads"] == [], "handlers and models read settings from nowhere but their arguments"
    assert list(tmp_path.iterdir()) == [], "importing a handler wrote files"


@handler_params
def test_handler_imports_no_http_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])

    assert imported & HTTP_PACKAGES == set()


@handler_params
def test_module_declares_the_contract(path: Path) -> None:
    spec = load_handler(path)  # raises HandlerError naming what is wrong
    module = _module(spec)

    assert spec.description.strip(), "the first docstring line is the model's description"
    assert NAME_PATTERN.match(spec.name)
    assert isinstance(getattr(module, "VERSION", None), str), f"{path.name}: declare VERSION"
    assert isinstance(getattr(module, "REQUIRES", ()), tuple)
    assert spec.setup is not None, f"{path.name}: declare setup() to build the model once per process"
    # setup() without parameters, or setup(artifacts) when the handler names ARTIFACTS.
    assert len(inspect.signature(spec.setup).parameters) == (1 if spec.setup_takes_artifacts else 0)
    assert spec.setup_takes_artifacts == (getattr(module, "ARTIFACTS", None) is not None)
    assert len(inspect.signature(spec.predict).parameters) == 2
    if spec.predict_batch is not None:
        assert len(inspect.signature(spec.predict_batch).parameters) == 2


@handler_params
def test_schemas_are_valid_and_examples_match_them(path: Path) -> None:
    spec = load_handler(path)

    Draft202012Validator.check_schema(spec.input_schema)
    examples = spec.input_schema.get("examples")
    assert isinstance(examples, list), f"{path.name}: INPUT_SCHEMA needs `examples`, a list of inputs"
    assert examples, f"{path.name}: INPUT_SCHEMA's `examples` is empty"
    for example in examples:
        assert spec.input_validator.first_error(example) is None, example
    assert spec.output_schema is not None, f"{path.name}: declare OUTPUT_SCHEMA so results are checked"
    Draft202012Validator.check_schema(spec.output_schema)
    for example in spec.output_schema.get("examples", []):
        assert spec.output_validator is not None
        assert spec.output_validator.first_error(example) is None, example


@handler_params
def test_input_schema_is_a_closed_object(path: Path) -> None:
    schema = load_handler(path).input_schema

    assert schema["type"] == "object"
    if path.stem not in OPEN_INPUT_SCHEMAS:
        assert schema.get("additionalProperties") is False, "an unknown key is a client's mistake: refuse it"


@pytest.fixture(scope="module")
def models() -> dict[Path, Any]:
    """Each handler's model, set up on first use (once for this module's tests)."""
    return {}


def _model(spec: ModelSpec, models: dict[Path, Any]) -> Any:
    for name in spec.requires:
        pytest.importorskip(name, reason=f"{spec.name} needs {name}: pip install -r requirements-embedding.txt")
    if spec.path not in models:
        assert spec.setup is not None
        artifacts = getattr(_module(spec), "ARTIFACTS", None)
        models[spec.path] = spec.setup(PROJECT_ROOT / artifacts) if artifacts else spec.setup()
    return models[spec.path]


def _prepared(spec: Any, model: Any, payload: Any) -> Any:
    # What the core hands predict/predict_batch: the handler's `admit` and `prepare` of the payload.
    return spec.prepared(model, payload)


@handler_params
def test_examples_predict_outputs_that_match_the_output_schema(path: Path, models: dict[Path, Any]) -> None:
    spec = load_handler(path)
    model = _model(spec, models)
    assert spec.output_schema is not None
    validator = Draft202012Validator(spec.output_schema)

    for example in spec.input_schema["examples"]:
        result = spec.predict(model, _prepared(spec, model, example))
        validator.validate(result)
        assert json.loads(json.dumps(result)) == result, "plain JSON types only"


@handler_params
def test_predict_batch_equals_predict_per_item(path: Path, models: dict[Path, Any]) -> None:
    spec = load_handler(path)
    if spec.predict_batch is None:
        return  # optional: without it, batch requests call predict() once per input
    model = _model(spec, models)
    examples = list(spec.input_schema["examples"]) * 2

    prepared = [_prepared(spec, model, example) for example in examples]
    batch = spec.predict_batch(model, prepared)
    singles = [spec.predict(model, item) for item in prepared]

    assert len(batch) == len(singles)
    for got, want in zip(batch, singles, strict=True):
        assert _close(got, want)
    assert spec.predict_batch(model, []) == []


def _close(got: Any, want: Any) -> bool:
    # Batched text is padded to the longest item, which moves float32 sums in the last bits.
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(_close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, float):
        return bool(got == pytest.approx(want, abs=1e-5))
    return bool(got == want)


def _module(spec: ModelSpec) -> Any:
    return inspect.getmodule(spec.predict)


@pytest.fixture(scope="module")
def openapi_paths() -> dict[str, Any]:
    app = create_app(Settings(handlers_dir=HANDLERS_DIR, model_loading="lazy"))
    document: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
    return document


@handler_params
def test_openapi_documents_the_model(path: Path, openapi_paths: dict[str, Any]) -> None:
    name = load_handler(path).name

    assert "post" in openapi_paths["paths"][f"/v1/{name}"]
    assert "post" in openapi_paths["paths"][f"/v1/models/{name}:predict"]
    assert f"{name}.Input" in openapi_paths["components"]["schemas"]


@pytest.fixture(scope="module")
def handlers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The project's handlers under a real gunicorn; each model loads on first use."""
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "HANDLERS_DIR": str(HANDLERS_DIR),
        "MODEL_LOADING": "lazy",
    }
    log_path = tmp_path_factory.mktemp("contract") / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log_path, env=env, ready_path="/healthz") as server:
        yield server


def _skip_unless_available(server: ServerProcess, spec: ModelSpec) -> None:
    state = requests.get(f"{server.url}/v1/models/{spec.name}", timeout=10).json()
    if state["status"] == "unavailable":
        pytest.skip(f"{spec.name} is unavailable: {state.get('reason')}")


@pytest.mark.e2e
@handler_params
def test_examples_succeed_over_http(path: Path, handlers_server: ServerProcess) -> None:
    spec = load_handler(path)
    _skip_unless_available(handlers_server, spec)
    examples = list(spec.input_schema["examples"])
    assert spec.output_validator is not None

    singles = [
        requests.post(f"{handlers_server.url}/v1/{spec.name}", json=example, timeout=120) for example in examples
    ]
    batch = requests.post(
        f"{handlers_server.url}/v1/models/{spec.name}:predict", json={"instances": examples}, timeout=120
    )

    for example, response in zip(examples, singles, strict=True):
        assert response.status_code == 200, (example, response.text[:500])
        assert spec.output_validator.first_error(response.json()["result"]) is None
    assert batch.status_code == 200, batch.text[:500]
    predictions = batch.json()["predictions"]
    assert len(predictions) == len(examples)
    for prediction in predictions:
        assert spec.output_validator.first_error(prediction) is None
