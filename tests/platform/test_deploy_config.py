"""The deploy files: valid for the SDK's own parsers, and consistent with each other and the app.

bin/check-deploy-config runs gcloud's parsers (app.yaml as `gcloud app deploy` reads it,
service.yaml as `gcloud run services replace` decodes it, cloudbuild.yaml as
`gcloud builds submit` loads it) plus Cloud Run's server-side limits; the broken copies
below prove each check fails. The rest pins the facts the files share: one gunicorn
command, concurrency equal to gunicorn's threads, probes on the health routes, and a
Cloud Build whose test step is `make test`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from serving.config.settings import Settings
from tests.conftest import require_service
from tests.platform.platforms import (
    PROJECT,
    SERVICE_IMAGE_PLACEHOLDER,
    check_deploy_config,
    cloud_build_values,
    container_env,
    load_yaml,
    parse_dockerfile,
    render_service_yaml,
    sdk_root,
    service_container,
    step,
)
from tests.servers import PROJECT_ROOT

ENTRYPOINT = "gunicorn -c gunicorn.conf.py main:app"
DEPLOY_FILES = ("app.yaml", "service.yaml", "cloudbuild.yaml", ".gcloudignore")


def _require_sdk() -> None:
    require_service(sdk_root() is not None, "the Google Cloud SDK (gcloud) is not installed")


# --- the SDK's parsers ----------------------------------------------------------------


def test_sdk_accepts_the_deploy_files() -> None:
    _require_sdk()

    result = check_deploy_config()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"the mutation's anchor {old!r} is gone"
        return text.replace(old, new, 1)

    return edit


BROKEN = [
    ("app.yaml", _replace("  max_instances: 10", "  max_instances: 10\n  max_instancez: 3"), "max_instancez"),
    ("app.yaml", _replace("max_instances: 10", "max_instances: lots"), "could not be converted to type int"),
    ("app.yaml", _replace("runtime: python313", "runtime: python39"), "expected python313 or newer"),
    ("app.yaml", _replace("runtime: python313", "runtime: pyhton313"), "expected python313 or newer"),
    ("app.yaml", _replace("  secure: always\n  # Embedding", "  secure: sometimes\n  # Embedding"), "secure"),
    ("app.yaml", lambda text: text + "skip_files:\n- ^tests/.*$\n", "skip_files cannot be used"),
    ("service.yaml", _replace("        ports:\n", "        cpus: 2\n        ports:\n"), "cpus"),
    ("service.yaml", _replace("containerConcurrency: 16", "containerConcurrency: lots"), "containerConcurrency"),
    ("service.yaml", _replace("containerConcurrency: 16", "containerConcurrency: 5000"), "expected 1 to 1000"),
    (
        "service.yaml",
        _replace("run.googleapis.com/cpu-throttling:", "run.googleapis.com/cpu-throtling:"),
        "unknown annotation 'run.googleapis.com/cpu-throtling'",
    ),
    (
        "service.yaml",
        _replace('startup-cpu-boost: "true"', 'startup-cpu-boost: "yes"'),
        "must be one of ['false', 'true']",
    ),
    ("service.yaml", _replace("failureThreshold: 120", "failureThreshold: 121"), "Cloud Run allows 240"),
    ("service.yaml", _replace("- name: GUNICORN_WORKERS", "- name: PORT"), "PORT is set by Cloud Run"),
    (
        "service.yaml",
        _replace(
            "        - name: GUNICORN_WORKERS",
            '        - name: ARTIFACTS_TIMEOUT_S\n          value: "300"\n        - name: GUNICORN_WORKERS',
        ),
        "ARTIFACTS_TIMEOUT_S=300 plus 30 s to start exceeds the startup probe's budget (240 s)",
    ),
    (
        "service.yaml",
        _replace("failureThreshold: 120", "failureThreshold: 100"),
        "ARTIFACTS_TIMEOUT_S=180 plus 30 s to start exceeds the startup probe's budget (200 s)",
    ),
    (
        "app.yaml",
        _replace('  GUNICORN_WORKERS: "2"', '  GUNICORN_WORKERS: "2"\n  ARTIFACTS_TIMEOUT_S: "590"'),
        "exceeds App Engine's warmup request deadline (600 s)",
    ),
    ("service.yaml", _replace("memory: 2Gi", "memory: 2GB"), "expected e.g. 512Mi or 2Gi"),
    ("cloudbuild.yaml", _replace("  entrypoint: make\n", "  entrypoint: make\n  entrypont: make\n"), "entrypont"),
    ("cloudbuild.yaml", _replace("  _SERVICE: model-serving", "  SERVICE: model-serving"), "substitution key SERVICE"),
    ("cloudbuild.yaml", _replace("  waitFor: [test]\n", "  waitFor: [tests]\n"), "'tests' is not the id of an earlier"),
    ("cloudbuild.yaml", _replace("- id: push-image", "- id: build-image"), "'build-image' is used twice"),
]


BROKEN_IDS = [
    "app-unknown-key",
    "app-bad-int",
    "app-old-runtime",
    "app-misspelt-runtime",
    "app-bad-secure",
    "app-skip-files",
    "run-unknown-key",
    "run-bad-type",
    "run-concurrency-range",
    "run-misspelt-annotation",
    "run-bad-annotation-value",
    "run-startup-too-long",
    "run-reserved-env",
    "run-artifacts-timeout-over-the-startup-probe",
    "run-startup-probe-under-the-default-artifacts-timeout",
    "app-artifacts-timeout-over-the-warmup-deadline",
    "run-bad-memory",
    "build-unknown-key",
    "build-substitution-name",
    "build-unknown-wait",
    "build-duplicate-id",
]


@pytest.fixture(scope="module")
def broken_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Every broken copy in its own directory, all checked by one run (the SDK is slow to import)."""
    _require_sdk()
    root = tmp_path_factory.mktemp("broken")
    args = []
    for case_id, (name, mutate, _message) in zip(BROKEN_IDS, BROKEN, strict=True):
        directory = root / case_id
        directory.mkdir()
        for file in DEPLOY_FILES:
            shutil.copy(PROJECT_ROOT / file, directory / file)
        (directory / name).write_text(mutate((PROJECT_ROOT / name).read_text()))
        args += [
            f"--app-yaml={directory / 'app.yaml'}",
            f"--service-yaml={directory / 'service.yaml'}",
            f"--cloudbuild-yaml={directory / 'cloudbuild.yaml'}",
        ]
    result = check_deploy_config(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    return root, result.stdout


@pytest.mark.parametrize(("name", "mutate", "message"), BROKEN, ids=BROKEN_IDS)
def test_a_broken_copy_fails_the_check(
    broken_copies: tuple[Path, str], request: pytest.FixtureRequest, name: str, mutate: Any, message: str
) -> None:
    root, output = broken_copies
    directory = root / request.node.callspec.id

    problems = _problems(output, root)
    reported: dict[Path, str] = {}
    for path, text in problems:
        if path.parent == directory:
            reported[path] = reported.get(path, "") + text + "\n"

    # Exactly the broken file of this copy is reported, with the parser's reason.
    assert set(reported) == {directory / name}, output
    assert message in reported[directory / name]


def _problems(output: str, root: Path) -> list[tuple[Path, str]]:
    """(file, problem) from check-deploy-config's output; a problem may span lines."""
    problems: list[tuple[Path, str]] = []
    for line in output.splitlines():
        path, separator, text = line.partition(": ")
        if separator and path.startswith(str(root)):
            problems.append((Path(path), text))
        elif problems:
            problems[-1] = (problems[-1][0], problems[-1][1] + "\n" + line)
    return problems


def test_uploads_are_the_app_without_local_state() -> None:
    _require_sdk()

    result = check_deploy_config("--list-uploads")

    uploaded = set(result.stdout.split())
    assert {
        "app.yaml",
        "main.py",
        "gunicorn.conf.py",
        "requirements.txt",
        "serving/app.py",
        "serving/platform/functions.py",
        "handlers/xxx_model.py",
        "models/greeter.py",
    } <= uploaded
    local_state = [f for f in uploaded if re.match(r"(\.venv|\.git|var|tmp)(/|$)|.*__pycache__|.*\.pyc$", f)]
    assert local_state == []


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("size", "ignored", "refused"),
    [
        (32 * MIB + 1, False, True),
        (32 * MIB, False, False),
        (90 * MIB, True, False),
    ],
    ids=["over-32-MiB", "exactly-32-MiB", "over-but-in-gcloudignore"],
)
def test_an_upload_over_app_engines_file_limit_fails_the_check(
    tmp_path: Path, size: int, ignored: bool, refused: bool
) -> None:
    _require_sdk()
    for file in DEPLOY_FILES:
        shutil.copy(PROJECT_ROOT / file, tmp_path / file)
    (tmp_path / "models").mkdir()
    with (tmp_path / "models" / "weights.onnx").open("wb") as handle:
        handle.truncate(size)  # sparse: the size is what counts, not the disk
    if ignored:
        with (tmp_path / ".gcloudignore").open("a") as handle:
            handle.write("\nmodels/weights.onnx\n")

    result = check_deploy_config(f"--app-yaml={tmp_path / 'app.yaml'}")

    assert result.returncode == (1 if refused else 0), result.stdout + result.stderr
    problem = f"{tmp_path / 'app.yaml'}: models/weights.onnx is 32.0 MiB; App Engine refuses uploaded files over 32 MiB"
    assert (problem in result.stdout) is refused, result.stdout


def test_the_uploads_leave_out_the_embedding_graph() -> None:
    # App Engine cannot take the 86 MiB file; the check above would fail the deploy config.
    _require_sdk()

    uploaded = set(check_deploy_config("--list-uploads").stdout.split())

    assert "models/sentence_embedding/model.onnx" not in uploaded
    assert {"models/sentence_embedding/model.py", "handlers/sentence_embedding.py"} <= uploaded


def test_rendered_service_yaml_is_valid_and_complete(tmp_path: Path) -> None:
    _require_sdk()
    cloudbuild = load_yaml(PROJECT_ROOT / "cloudbuild.yaml")
    values = cloud_build_values(cloudbuild)

    rendered = render_service_yaml(tmp_path / "service.rendered.yaml")
    result = check_deploy_config(f"--service-yaml={rendered}")

    assert result.returncode == 0, result.stdout
    service = load_yaml(rendered)
    container = service_container(service)
    assert container["image"] == f"{values['_IMAGE']}:{values['BUILD_ID']}"
    assert container["image"].startswith(f"us-central1-docker.pkg.dev/{PROJECT}/")
    assert container_env(container)["GOOGLE_CLOUD_PROJECT"] == PROJECT
    assert service["metadata"]["name"] == values["_SERVICE"]
    assert "PROJECT_ID" not in rendered.read_text()


# --- what the files must agree on -----------------------------------------------------


def _app_yaml() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(PROJECT_ROOT / "app.yaml")
    return data


def _service() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(PROJECT_ROOT / "service.yaml")
    return data


def _gunicorn_concurrency(env: dict[str, str]) -> int:
    settings = Settings.from_env(env)
    return settings.workers * settings.threads


def test_app_yaml_runs_gunicorn_on_a_current_runtime_over_https_only() -> None:
    app = _app_yaml()

    assert re.fullmatch(r"python3(1[3-9]|[2-9]\d)", app["runtime"])
    assert app["entrypoint"] == ENTRYPOINT
    assert "warmup" in app["inbound_services"]
    assert "skip_files" not in app
    assert isinstance(app["automatic_scaling"]["max_instances"], int)
    env = {k: str(v) for k, v in app["env_variables"].items()}
    assert app["automatic_scaling"]["max_concurrent_requests"] == _gunicorn_concurrency(env)
    assert app["handlers"], "handlers"
    assert all(handler["secure"] == "always" for handler in app["handlers"])
    assert app["handlers"][-1] == {"url": "/.*", "script": "auto", "secure": "always"}


def test_app_yaml_serves_the_widget_files_where_the_app_does() -> None:
    (static,) = [h for h in _app_yaml()["handlers"] if "static_dir" in h]

    # The app serves web/static/ at /static/ everywhere else (Cloud Run, Functions).
    assert static["url"] == "/static"
    assert static["static_dir"] == "web/static"
    assert static["http_headers"]["Access-Control-Allow-Origin"] == "*"


def test_dockerfile_is_pinned_unprivileged_and_execs_the_same_gunicorn() -> None:
    dockerfile = parse_dockerfile(PROJECT_ROOT / "Dockerfile")

    assert re.fullmatch(r"python:3\.1[3-9]\.\d+-slim-\w+", dockerfile.base), dockerfile.base
    assert dockerfile.user not in {"root", "0", ""}
    assert dockerfile.cmd_is_shell_form
    assert dockerfile.cmd[2] == f"exec {ENTRYPOINT}"
    assert dockerfile.env["PYTHONUNBUFFERED"] == "1"
    port = service_container(_service())["ports"][0]["containerPort"]
    assert dockerfile.env["PORT"] == str(port) == "8080"


def test_service_yaml_matches_gunicorn_and_the_health_routes() -> None:
    service = _service()
    template = service["spec"]["template"]
    container = service_container(service)
    annotations = template["metadata"]["annotations"]
    port = container["ports"][0]["containerPort"]
    settings = Settings.from_env({k: v for k, v in container_env(container).items() if k.startswith("GUNICORN_")})

    assert template["spec"]["containerConcurrency"] == settings.workers * settings.threads
    assert template["spec"]["timeoutSeconds"] == settings.timeout_s
    # Cloud Run sends SIGKILL 10 s after SIGTERM.
    assert settings.graceful_timeout_s < 10
    assert container["startupProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert annotations["run.googleapis.com/startup-cpu-boost"] == "true"
    assert annotations["run.googleapis.com/cpu-throttling"] in {"true", "false"}
    assert int(annotations["autoscaling.knative.dev/maxScale"]) >= 1
    assert container["image"] == SERVICE_IMAGE_PLACEHOLDER
    assert container_env(container)["GOOGLE_CLOUD_PROJECT"] == "PROJECT_ID"


def _waits_for(steps: list[dict[str, Any]], index: int, target: str) -> bool:
    """True when step `index` runs only after step `target` (Cloud Build's waitFor rules)."""
    current = steps[index]
    if current.get("id") == target:
        return True
    wait = current.get("waitFor")
    if wait is None:  # no waitFor: after every earlier step
        return index > 0 and any(_waits_for(steps, i, target) for i in range(index))
    if wait == ["-"]:
        return False
    ids = {s.get("id"): i for i, s in enumerate(steps)}
    return any(_waits_for(steps, ids[name], target) for name in wait)


def test_cloud_build_tests_with_make_test_before_any_deploy() -> None:
    cloudbuild = load_yaml(PROJECT_ROOT / "cloudbuild.yaml")
    steps = cloudbuild["steps"]
    test = step(cloudbuild, "test")

    # The test step is `make test`, in one lane (the image has one Python, 3.13) with the
    # export tests, which CI runs on 3.11.
    assert steps[0]["id"] == "test"
    assert [test["entrypoint"], *test["args"]] == ["make", "test", "LANES=one", "EXPORT_TESTS=yes"]
    assert test["name"].startswith("python:3.13")
    # torch==2.13.0 from PyPI is the CUDA build (GB of GPU libraries): the CPU index is added.
    assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in test["env"]
    for index in range(1, len(steps)):
        assert _waits_for(steps, index, "test"), steps[index]["id"]


def test_cloud_build_deploys_app_engine_and_cloud_run_tagged_with_the_build() -> None:
    cloudbuild = load_yaml(PROJECT_ROOT / "cloudbuild.yaml")
    app_engine = step(cloudbuild, "deploy-app-engine")
    build = step(cloudbuild, "build-image")
    push = step(cloudbuild, "push-image")
    run = step(cloudbuild, "deploy-cloud-run")

    assert app_engine["name"].startswith("gcr.io/google.com/cloudsdktool/google-cloud-cli:")
    assert app_engine["args"][:3] == ["app", "deploy", "app.yaml"]
    assert "--version=$BUILD_ID" in app_engine["args"]
    assert "--tag=${_IMAGE}:$BUILD_ID" in build["args"]
    assert push["args"] == ["push", "${_IMAGE}:$BUILD_ID"]
    assert cloudbuild["images"] == ["${_IMAGE}:$BUILD_ID"]
    assert run["args"][:4] == ["run", "services", "replace", "service.rendered.yaml"]
    assert {"_REGION", "_SERVICE", "_REPOSITORY", "_IMAGE"} <= set(cloudbuild["substitutions"])


def _make_dry_run(*args: str) -> list[str]:
    """The commands `make -n` would run (pip lines left out), with PYTHON_313 named."""
    env = {**os.environ, "PYTHON_313": "/opt/python3.13"}
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if " -m pip " not in line and not line.startswith("touch ")]


def test_make_run_serves_on_the_port_the_readme_shows() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    (port,) = re.findall(r"^make run PORT=(\d+) ", readme, flags=re.MULTILINE)
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")

    # -n prints the recipes without running any of them (nothing is installed or started).
    dry_run = subprocess.run(
        [make, "-n", "run", f"PORT={port}"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )

    (serve,) = [line for line in dry_run.stdout.splitlines() if "gunicorn -c gunicorn.conf.py main:app" in line]
    assert f"PORT={port} " in serve


def test_make_test_is_lint_typecheck_and_the_whole_suite_on_both_pythons() -> None:
    commands = _make_dry_run("test", "PYTHON=python3.11", "VENV=.venv")

    assert ".venv/bin/ruff check ." in commands
    assert ".venv/bin/lint-imports" in commands
    assert ".venv/bin/mypy --strict serving/" in commands
    assert ".venv/bin/mypy --strict --python-version 3.13 serving/" in commands
    pytest_runs = [shlex.split(line) for line in commands if " -m pytest" in line]
    # 3.11: the unit tests and the export tests; the offline-scoring tests in .venv-beam
    # (Apache Beam's pins clash with ours); then 3.13 (App Engine's): the whole suite but
    # the export tests, its unit tests on two processes and then its e2e tests, last, so
    # that their pytest line closes the output CI reads.
    assert pytest_runs == [
        [".venv/bin/python", "-m", "pytest", "-m", "not e2e or export", "-n", "2", "--ignore=tests/offline"],
        [".venv-beam/bin/python", "-m", "pytest", "tests/offline"],
        [".venv-3.13/bin/python", "-m", "pytest", "-m", "not e2e and not export", "-n", "2", "--ignore=tests/offline"],
        [".venv-3.13/bin/python", "-m", "pytest", "-m", "e2e and not export", "--ignore=tests/offline"],
    ]
    assert shlex.split(commands[-1]) == pytest_runs[-1]
    assert any("PYTHON=/opt/python3.13 VENV=.venv-3.13" in line for line in commands), commands


def test_make_test_in_one_lane_runs_the_whole_suite_once() -> None:
    # What Cloud Build runs (cloudbuild.yaml): its image has one Python.
    commands = _make_dry_run("test", "LANES=one", "EXPORT_TESTS=yes", "VENV=.venv")

    assert [shlex.split(line) for line in commands if " -m pytest" in line] == [
        [".venv/bin/python", "-m", "pytest", "--ignore=tests/offline"],
        [".venv-beam/bin/python", "-m", "pytest", "tests/offline"],
    ]


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git/", ".venv/", "__pycache__/", "tests/"} <= patterns


def test_check_deploy_config_knows_the_default_artifacts_timeout() -> None:
    # It runs under the SDK's Python, without the project's packages: it states the default.
    script = (PROJECT_ROOT / "bin" / "check-deploy-config").read_text()
    stated = re.search(r"^DEFAULT_ARTIFACTS_TIMEOUT_S = ([0-9.]+)$", script, re.MULTILINE)

    assert stated is not None
    assert float(stated.group(1)) == Settings().artifacts_timeout_s
