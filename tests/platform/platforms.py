"""Reading the platform files the way their platforms do, for the deploy-config and e2e tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.servers import PROJECT_ROOT

CHECK_DEPLOY_CONFIG = PROJECT_ROOT / "bin" / "check-deploy-config"
DEV_APPSERVER = PROJECT_ROOT / "bin" / "dev-appserver"
# Wheels of requirements.txt for the running Python (the Makefile fills it for each venv).
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"

# What the tests call the project, the service and its revision.
PROJECT = "model-serving-test"
# The image reference service.yaml carries for cloudbuild.yaml's render step to fill.
SERVICE_IMAGE_PLACEHOLDER = "REGION-docker.pkg.dev/PROJECT_ID/model-serving/model-serving:latest"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def sdk_root() -> Path | None:
    """The Google Cloud SDK's root (the one `gcloud` on PATH belongs to), if installed."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    root = Path(os.path.realpath(gcloud)).parent.parent
    return root if (root / "lib" / "googlecloudsdk").is_dir() else None


def dev_appserver_installed() -> bool:
    root = sdk_root()
    return root is not None and (root / "bin" / "dev_appserver.py").is_file()


def check_deploy_config(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    """Run bin/check-deploy-config (the SDK's parsers) with `args`."""
    return subprocess.run(
        [str(CHECK_DEPLOY_CONFIG), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile that decide how its container starts."""

    base: str
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    user: str = "root"
    cmd: list[str] = field(default_factory=list)
    cmd_is_shell_form: bool = False


def parse_dockerfile(path: Path) -> Dockerfile:
    """FROM, WORKDIR, ENV, USER and CMD as Docker reads them (continuations, both CMD forms)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    parsed: Dockerfile | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parsed = Dockerfile(base=rest.split()[0])
            continue
        assert parsed is not None, f"{path}: {keyword} before FROM"
        if keyword == "WORKDIR":
            parsed.workdir = rest
        elif keyword == "USER":
            parsed.user = rest
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                parsed.env[name] = value
        elif keyword == "CMD":
            if rest.startswith("["):
                parsed.cmd, parsed.cmd_is_shell_form = json.loads(rest), False
            else:
                # Docker runs the shell form as `/bin/sh -c "<rest>"`.
                parsed.cmd, parsed.cmd_is_shell_form = ["/bin/sh", "-c", rest], True
    assert parsed is not None, f"{path}: no FROM"
    return parsed


def cloud_build_substitute(text: str, values: dict[str, str]) -> str:
    """`text` with `$NAME` and `${NAME}` replaced as Cloud Build does (`$$` is a literal `$`)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(2)
        return values[name]

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


def cloud_build_values(cloudbuild: dict[str, Any], **builtins: str) -> dict[str, str]:
    """The substitution values of a build: built-ins, then the file's own (which may use them)."""
    values = {"PROJECT_ID": PROJECT, "BUILD_ID": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", **builtins}
    for name, value in (cloudbuild.get("substitutions") or {}).items():
        values[name] = cloud_build_substitute(str(value), values)  # dynamicSubstitutions
    return values


def step(cloudbuild: dict[str, Any], step_id: str) -> dict[str, Any]:
    """The step of `cloudbuild` with this id."""
    (found,) = [s for s in cloudbuild["steps"] if s.get("id") == step_id]
    return dict(found)


def render_service_yaml(destination: Path) -> Path:
    """service.yaml with cloudbuild.yaml's own render step applied (its command, run by bash)."""
    cloudbuild = load_yaml(PROJECT_ROOT / "cloudbuild.yaml")
    render = step(cloudbuild, "render-service")
    values = cloud_build_values(cloudbuild)
    args = [cloud_build_substitute(arg, values) for arg in render["args"]]
    workspace = destination.parent
    shutil.copy(PROJECT_ROOT / "service.yaml", workspace / "service.yaml")
    subprocess.run([render["entrypoint"], *args], cwd=workspace, check=True, timeout=30)
    rendered = workspace / "service.rendered.yaml"
    if rendered != destination:
        rendered.replace(destination)
    return destination


def service_container(service: dict[str, Any]) -> dict[str, Any]:
    """The (single) container of a Knative service."""
    (container,) = service["spec"]["template"]["spec"]["containers"]
    return dict(container)


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in container.get("env", [])}
