"""The demo page and the embed snippet in a real browser, against the real gunicorn.

One gunicorn serves the project's own handlers/ with CORS_ORIGINS naming one foreign
website (a static server on another loopback port); a second website on a third port is
not named, so the API refuses it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import PROJECT_ROOT, ServerProcess, free_port, gunicorn_command, running_server
from tests.web.sites import StaticSite, html_page, serving_static_site

pytestmark = pytest.mark.e2e

PHONE = {"width": 360, "height": 740}
DIGIT_SAMPLES = PROJECT_ROOT / "models" / "digits" / "samples"


@pytest.fixture(scope="module")
def allowed_site() -> Iterator[StaticSite]:
    with serving_static_site() as site:
        yield site


@pytest.fixture(scope="module")
def refused_site() -> Iterator[StaticSite]:
    with serving_static_site() as site:
        yield site


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, allowed_site: StaticSite) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "CORS_ORIGINS": allowed_site.origin,
    }
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log_path, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def models(api: ServerProcess) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = requests.get(api.url + "/v1/models", timeout=5).json()["models"]
    return listed


def _card(page: Any, model: str) -> Any:
    return page.locator(f"article#model-{model}")


def _open_demo(page: Any, api: ServerProcess) -> None:
    page.goto(api.url + "/")
    # Every widget has rendered its form (or its notice) once each title is shown.
    page.locator(".msw-title").first.wait_for()


def _snippet(page: Any, api: ServerProcess, model: str) -> str:
    _open_demo(page, api)
    text: str = _card(page, model).locator(".snippet code").text_content()
    return text


def test_demo_page_lists_every_model_without_console_errors(
    page: Any, page_errors: Any, api: ServerProcess, models: list[dict[str, Any]]
) -> None:
    from playwright.sync_api import expect

    page.goto(api.url + "/")

    expect(page.locator("#models-status")).to_contain_text(f"{len(models)} model")
    for entry in models:
        card = _card(page, entry["name"])
        expect(card.locator(".msw-title")).to_have_text(entry["name"])
        expect(card.get_by_role("button", name="Predict")).to_be_visible()
        expect(card.locator(".snippet code")).to_contain_text(f'data-model="{entry["name"]}"')
    assert page_errors.all() == []


def test_xxxmodel_greets_leo(page: Any, api: ServerProcess) -> None:
    from playwright.sync_api import expect

    _open_demo(page, api)
    card = _card(page, "XXXModel")

    card.get_by_label("Name").fill("Leo")
    card.get_by_role("button", name="Predict").click()

    output = card.locator(".msw-output")
    expect(output).to_contain_text("Hello, Leo!")
    expect(output).to_have_attribute("aria-live", "polite")


@pytest.mark.parametrize(
    ("measurements", "species"),
    [((5.1, 3.5, 1.4, 0.2), "setosa"), ((6.7, 3.0, 5.2, 2.3), "virginica")],
    ids=["setosa", "virginica"],
)
def test_iris_shows_a_label(page: Any, api: ServerProcess, measurements: tuple[float, ...], species: str) -> None:
    from playwright.sync_api import expect

    _open_demo(page, api)
    card = _card(page, "Iris")
    for label, value in zip(("Sepal length", "Sepal width", "Petal length", "Petal width"), measurements, strict=True):
        card.get_by_label(label).fill(str(value))
    card.get_by_role("button", name="Predict").click()

    expect(card.locator(".msw-headline")).to_have_text(f"Label {species}")
    bars = card.get_by_role("list", name="Probabilities").get_by_role("listitem")
    expect(bars).to_have_count(3)
    expect(bars.first).to_contain_text(species)


@pytest.mark.parametrize("digit", sorted(int(path.stem) for path in DIGIT_SAMPLES.glob("*.png")))
def test_digits_reads_an_uploaded_image(page: Any, api: ServerProcess, digit: int) -> None:
    from playwright.sync_api import expect

    _open_demo(page, api)
    card = _card(page, "Digits")
    card.get_by_label("Image").set_input_files(str(DIGIT_SAMPLES / f"{digit}.png"))
    expect(card.get_by_role("img", name=f"Preview of {digit}.png")).to_be_visible()
    with page.expect_request(lambda request: request.method == "POST" and "/v1/Digits" in request.url) as sent:
        card.get_by_role("button", name="Predict").click()

    # The file itself, in a form: no base64 in JSON.
    assert sent.value.headers["content-type"].startswith("multipart/form-data; boundary=")
    expect(card.locator(".msw-headline")).to_have_text(f"Digit {digit}")
    expect(card.get_by_role("list", name="Probabilities").get_by_role("listitem")).to_have_count(10)


def test_digits_shows_the_servers_answer_to_a_broken_image(page: Any, api: ServerProcess, tmp_path: Path) -> None:
    # Whatever the server says about this image (the model's own 400 message), the widget
    # shows it, with the status: compared with the same request sent directly.
    from playwright.sync_api import expect

    broken = tmp_path / "scan.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    direct = requests.post(
        api.url + "/v1/Digits", json={"image": base64.b64encode(broken.read_bytes()).decode()}, timeout=10
    )
    assert direct.status_code >= 400
    _open_demo(page, api)
    card = _card(page, "Digits")

    card.get_by_label("Image").set_input_files(str(broken))
    card.get_by_role("button", name="Predict").click()

    alert = card.get_by_role("alert")
    expect(alert).to_contain_text(direct.json()["message"])
    expect(alert).to_contain_text(f"HTTP {direct.status_code}")


def test_keyboard_alone_fills_and_submits_a_widget(page: Any, api: ServerProcess) -> None:
    from playwright.sync_api import expect

    _open_demo(page, api)
    card = _card(page, "XXXModel")
    name_input = card.get_by_label("Name")

    for _ in range(60):  # every control before it on the page, at most
        page.keyboard.press("Tab")
        if name_input.evaluate("element => element.getRootNode().activeElement === element"):
            break
    else:
        pytest.fail("Tab never reached the Name field")
    page.keyboard.type("Ada")
    page.keyboard.press("Enter")
    expect(card.locator(".msw-output")).to_contain_text("Hello, Ada!")

    # Tab on to the button and press it with the space bar.
    name_input.fill("Grace")
    name_input.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    expect(card.locator(".msw-output")).to_contain_text("Hello, Grace!")


def test_results_are_text_never_markup(page: Any, api: ServerProcess) -> None:
    from playwright.sync_api import expect

    _open_demo(page, api)
    card = _card(page, "XXXModel")
    attack = '<img src=x onerror="window.__injected = true">'

    card.get_by_label("Name").fill(attack)
    card.get_by_role("button", name="Predict").click()

    expect(card.locator(".msw-text")).to_have_text(f"Hello, {attack}!")
    assert card.locator(".msw-output img").count() == 0
    assert page.evaluate("window.__injected") is None


def test_narrow_phone_screen(page: Any, api: ServerProcess, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size(PHONE)
    _open_demo(page, api)
    card = _card(page, "XXXModel")
    card.get_by_label("Name").fill("Leo")
    card.get_by_role("button", name="Predict").click()
    expect(card.locator(".msw-output")).to_contain_text("Hello, Leo!")

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for control in (card.get_by_label("Name"), card.get_by_role("button", name="Predict")):
        box = control.bounding_box()
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
    page.screenshot(path=str(artifacts_dir / "demo-page-phone.png"), full_page=True)


def test_demo_page_screenshot(
    page: Any, page_errors: Any, api: ServerProcess, models: list[dict[str, Any]], artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    _open_demo(page, api)
    for entry in models:
        card = _card(page, entry["name"])
        if entry["status"] == "ready" and entry["input_schema"].get("examples"):
            card.get_by_role("button", name="Fill example").click()
            card.get_by_role("button", name="Predict").click()
            expect(card.locator(".msw-result")).to_be_visible()
    card = _card(page, "XXXModel")
    card.get_by_label("Name").fill("Leo")
    card.get_by_role("button", name="Predict").click()
    expect(card.locator(".msw-output")).to_contain_text("Hello, Leo!")
    card.locator(".embed summary").click()

    path = artifacts_dir / "demo-page.png"
    page.screenshot(path=str(path), full_page=True)

    assert path.stat().st_size > 10_000
    assert page_errors.all() == []


def test_copied_snippet_works_on_an_allowed_origin(
    page: Any, page_errors: Any, api: ServerProcess, allowed_site: StaticSite
) -> None:
    from playwright.sync_api import expect

    snippet = _snippet(page, api, "XXXModel")
    allowed_site.pages["/shop.html"] = html_page("A shop", snippet)

    page.goto(allowed_site.url("/shop.html"))
    page.get_by_label("Name").fill("Leo")
    page.get_by_role("button", name="Predict").click()

    expect(page.locator(".msw-output")).to_contain_text("Hello, Leo!")
    assert page.evaluate("location.origin") != api.url
    assert page_errors.all() == []


def test_refused_origin_gets_a_clear_error(page: Any, api: ServerProcess, refused_site: StaticSite) -> None:
    from playwright.sync_api import expect

    snippet = _snippet(page, api, "XXXModel")
    refused_site.pages["/blog.html"] = html_page("A blog", snippet)

    page.goto(refused_site.url("/blog.html"))

    error = page.get_by_role("alert")
    expect(error).to_contain_text(f"does not allow this website ({refused_site.origin})")
    expect(error).to_contain_text("CORS_ORIGINS")
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
