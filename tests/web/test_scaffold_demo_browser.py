"""A model scaffolded with real feature names, class names and an example row, on the demo page.

The wine data set's names (`od280/od315_of_diluted_wines`) become fields titled with
them, `--classes` names the three cultivars, and `--example` is the first wine: the page
must label the fields with the names as given, fill the real row, and show a cultivar.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from serving.app import create_app
from serving.config.settings import Settings
from tests.scaffolding import copy_project
from tests.servers import ServerProcess, free_port, gunicorn_command, running_server

pytestmark = pytest.mark.e2e

CULTIVARS = ["Barolo", "Grignolino", "Barbera"]


@dataclass
class Served:
    server: ServerProcess
    first_wine: list[float]
    feature_names: list[str]
    expected_cultivar: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from sklearn.datasets import load_wine  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    from models.onnx_export import sklearn_to_onnx

    root = tmp_path_factory.mktemp("wine")
    project = copy_project(root / "project", extra=("web",))
    wine = load_wine()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(wine.data, wine.target)
    source = root / "wine.onnx"
    source.write_bytes(sklearn_to_onnx(pipeline, 13))
    first = wine.data[0].tolist()
    options = ["--features", ",".join(wine.feature_names), "--classes", ",".join(CULTIVARS)]
    options += ["--example", json.dumps(first), "--directory", str(project)]
    runner = create_app(Settings(model_loading="lazy", metrics=False)).test_cli_runner()
    result = runner.invoke(args=["new-model", "WineKind", "--from", str(source), *options])
    assert result.exit_code == 0, result.output
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_WORKERS": "1"}
    with running_server(gunicorn_command(), port=port, log_path=root / "gunicorn.log", env=env, cwd=project) as server:
        expected = CULTIVARS[int(pipeline.predict(wine.data[:1])[0])]
        yield Served(server, first, list(wine.feature_names), expected)


def test_the_demo_page_shows_real_names_fills_the_real_row_and_names_the_class(
    page: Any, page_errors: Any, served: Served
) -> None:
    from playwright.sync_api import expect

    page.goto(served.server.url + "/")
    card = page.locator("article#model-WineKind")
    card.locator(".msw-title").wait_for()

    # A field whose name had to change is labelled with the name as given.
    expect(card.get_by_label("od280/od315_of_diluted_wines")).to_be_visible()
    card.get_by_role("button", name="Fill example").click()
    expect(card.get_by_label("od280/od315_of_diluted_wines")).to_have_value(str(served.first_wine[11]))
    expect(card.get_by_label("Alcohol", exact=True)).to_have_value(str(served.first_wine[0]))
    card.get_by_role("button", name="Predict").click()

    expect(card.locator(".msw-headline")).to_have_text(f"Label {served.expected_cultivar}")
    bars = card.get_by_role("list", name="Probabilities").get_by_role("listitem")
    expect(bars).to_have_count(3)
    expect(bars.first).to_contain_text(served.expected_cultivar)
    assert sorted(bars.locator(".msw-bar-label").all_text_contents()) == sorted(CULTIVARS)
    assert page_errors.all() == []
    log = served.server.log()
    assert "Traceback" not in log
    assert "was sent SIG" not in log
