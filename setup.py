"""The package that Dataflow workers install to run `flask --app main score` (Beam's --setup_file).

Not how the server is deployed (App Engine, Cloud Run and Cloud Functions take the source
tree and requirements.txt). Beam runs `python setup.py sdist` here when a pipeline is
launched with `--setup_file setup.py` (the score command adds it for remote runners), stages
the archive, and every worker pip-installs it: serving/, handlers/ and models/ with their
model files, and requirements.txt's pins, except pillow, whose pin clashes with
apache-beam's (requirements-beam.txt pins the one both accept). tests/offline/test_shipping.py
builds it and checks that it holds every handler, model module and model file.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent
MODEL_FILES = ["*.onnx", "*.json", "*.skops", "*.png"]


def _pins(name: str, only: tuple[str, ...] = ()) -> list[str]:
    """`name`'s requirement lines (comments dropped); only the packages in `only` when given."""
    pins = []
    for line in (ROOT / name).read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement or requirement.startswith("-"):
            continue
        package = requirement.split("==", 1)[0].split("[", 1)[0].strip().lower()
        if not only or package in only:
            pins.append(requirement)
    return pins


setup(
    name="model-serving-offline",
    version="1.0.0",
    description="model-serving's handlers, models and core, for Apache Beam workers",
    python_requires=">=3.11",
    packages=find_namespace_packages(include=["serving", "serving.*", "handlers", "models", "models.*"]),
    package_data={"": MODEL_FILES},
    install_requires=[pin for pin in _pins("requirements.txt") if not pin.lower().startswith("pillow")]
    + _pins("requirements-beam.txt", only=("pillow",)),
)
