"""What Dataflow workers get: the package Beam builds from setup.py (`--setup_file`).

Beam's stager runs `python setup.py sdist` in the project (when the `build` package is
absent, as here) and each worker pip-installs the archive. These tests build it the same
way, check that it holds every handler, model module and model file, install it apart
from the source tree and score with it there. They need setuptools, not Beam, so they run
in both environments.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from serving.config.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

MODEL_FILE_SUFFIXES = {".onnx", ".json", ".skops", ".png"}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    # Under pytest-xdist each worker running a test of this module builds its own archive, and
    # `setup.py sdist` stages the release tree in the project root: two at once delete each
    # other's files ("No such file or directory: model_serving_offline-1.0.0/..."). The
    # workers share the parent of their base temporary directories, so they take turns there.
    with (tmp_path_factory.getbasetemp().parent / "sdist.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(
            [sys.executable, "setup.py", "--quiet", "sdist", "--dist-dir", str(dist)],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
    (archive,) = dist.glob("model_serving_offline-*.tar.gz")
    return archive


def _project_files() -> set[str]:
    wanted = {path for path in (PROJECT_ROOT / "handlers").glob("*.py")}
    for path in (PROJECT_ROOT / "models").rglob("*"):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and (path.suffix == ".py" or path.suffix in MODEL_FILE_SUFFIXES)
        ):
            wanted.add(path)
    wanted |= set((PROJECT_ROOT / "serving").rglob("*.py"))
    return {str(path.relative_to(PROJECT_ROOT)) for path in wanted}


def test_the_package_holds_every_handler_model_module_and_model_file(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}

    missing = _project_files() - names
    assert not missing
    assert {"handlers/iris.py", "models/digits/digits.onnx", "models/iris/iris.onnx", "requirements.txt"} <= names
    assert not any(name.startswith("tests/") for name in names)


def test_the_installed_package_scores_away_from_the_source_tree(sdist: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(sdist),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    script = (
        "import json, pathlib, serving\n"
        "from serving.runtime.handlers import discover_handlers\n"
        "from serving.runtime.registry import Registry\n"
        "root = pathlib.Path(serving.__file__).parent.parent\n"
        "registry = Registry(discover_handlers(root / 'handlers'))\n"
        "iris, digits = registry.get('Iris'), registry.get('Digits')\n"
        "from models.digits.examples import THREE_BASE64\n"
        "flower = {'sepal_length': 5.1, 'sepal_width': 3.5, 'petal_length': 1.4, 'petal_width': 0.2}\n"
        "print(json.dumps({'root': str(root), 'names': sorted(r.spec.name for r in registry),\n"
        "  'iris': iris.spec.predict(iris.ensure_loaded(), flower)['label'],\n"
        "  'digits': digits.spec.predict(digits.ensure_loaded(),\n"
        "    digits.spec.prepared(digits.ensure_loaded(), {'image': THREE_BASE64}))['digit']}))\n"
    )

    process = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(target)},
    )

    assert process.returncode == 0, process.stderr
    answer = json.loads(process.stdout.splitlines()[-1])
    assert answer["root"] == str(target)
    assert answer["names"] == sorted(["Digits", "Iris", "SentenceEmbedding", "XXXModel"])
    assert (answer["iris"], answer["digits"]) == ("setosa", 3)


def test_the_package_requires_the_servers_pins_with_beams_pillow(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        member = next(name for name in archive.getnames() if name.endswith(".egg-info/requires.txt"))
        extracted = archive.extractfile(member)
        assert extracted is not None
        required = set(extracted.read().decode().split())

    server = {f"{name}=={version}" for name, version in _pins(PROJECT_ROOT / "requirements.txt").items()}
    assert "pillow==12.3.0" in required
    assert "pillow==13.0.0" not in required
    assert server - {"pillow==13.0.0"} <= {re.sub(r"\[.*\]", "", requirement).lower() for requirement in required}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\[\]-]+)==(\S+)", line)
        if match:
            pins[match.group(1).split("[")[0].lower()] = match.group(2)
    return pins


def test_beam_environment_pins_agree_with_the_main_ones() -> None:
    main = _pins(PROJECT_ROOT / "requirements-test.txt") | _pins(PROJECT_ROOT / "requirements.txt")
    beam = _pins(PROJECT_ROOT / "requirements-beam-test.txt") | _pins(PROJECT_ROOT / "requirements-beam.txt")

    disagree = {name: (main[name], version) for name, version in beam.items() if name in main and main[name] != version}
    assert disagree == {"pillow": ("13.0.0", "12.3.0")}
