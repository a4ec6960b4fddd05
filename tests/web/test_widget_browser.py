"""The widget's forms, results and errors in a real browser, against the real gunicorn.

gunicorn serves the small handlers in tests/fixtures/handlers/widget/ (a model with one
field of every kind, one that refuses some valid requests, a slow one, an embedding,
one whose package is missing). Each test embeds widgets in a page of a foreign website
(any origin may call this server: CORS_ORIGINS is `*`).
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURE_HANDLERS
from tests.servers import ServerProcess, free_port, gunicorn_command, running_server
from tests.web.sites import StaticSite, html_page, serving_static_site

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "GUNICORN_WORKERS": "1",
        "HANDLERS_DIR": str(FIXTURE_HANDLERS / "widget"),
    }
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log_path, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    with serving_static_site() as static_site:
        yield static_site


@pytest.fixture
def show(page: Any, api: ServerProcess, site: StaticSite, request: pytest.FixtureRequest) -> Any:
    """Open a foreign page with one widget for `model` (extra data- attributes allowed)."""

    def open_widget(model: str, endpoint: str | None = None, **attributes: str) -> Any:
        extra = "".join(f' data-{name.replace("_", "-")}="{value}"' for name, value in attributes.items())
        snippet = (
            f'<script type="module" src="{api.url}/static/widget.js"></script>'
            f'<div data-model-widget data-endpoint="{endpoint or api.url}" data-model="{model}"{extra}></div>'
        )
        path = "/" + re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name) + ".html"
        site.pages[path] = html_page(f"{model} widget", snippet)
        page.goto(site.url(path))
        page.locator(".msw-title").wait_for()
        return page

    return open_widget


def _png(width: int = 2, height: int = 2) -> bytes:
    """A valid grey PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _received(page: Any) -> Any:
    from playwright.sync_api import expect

    expect(page.locator(".msw-output .msw-json")).to_have_count(1)
    return json.loads(page.locator(".msw-output .msw-json").text_content())


def test_every_field_kind_is_sent_as_typed_json(show: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = show("FormZoo")
    image = tmp_path / "grey.png"
    image.write_bytes(_png())

    page.get_by_label("Title").fill("hello")
    page.get_by_label("Notes").fill("line one\nline two")
    page.get_by_label("Count").fill("3")
    page.get_by_label("Percent").fill("25")
    page.get_by_label("Ratio").fill("0.5")
    page.get_by_label("Color").select_option(label="green")
    page.get_by_label("Size class").select_option(label="2")
    page.get_by_label("Flag").check()
    page.get_by_label("Photo").set_input_files(str(image))
    page.get_by_label("x", exact=True).fill("1.5")
    page.get_by_label("y", exact=True).fill("-2")
    page.get_by_label("Tags").fill("a\nb, c")
    page.get_by_label("Vector").fill("0.1, 0.2 0.3")
    page.get_by_label("Name", exact=True).select_option(label="in")
    page.get_by_label("Scale").fill("2.54")
    page.get_by_label("Anything").fill('{"k": [1, null]}')
    expect(page.get_by_role("img", name="Preview of grey.png")).to_be_visible()
    page.get_by_role("button", name="Predict").click()

    assert _received(page) == {
        "received": {
            "title": "hello",
            "notes": "line one\nline two",
            "count": 3,
            "percent": 25,
            "ratio": 0.5,
            "color": "green",
            "size": 2,
            "flag": True,
            "photo": {"bytes": len(_png()), "png": True},
            "point": [1.5, -2],
            "tags": ["a", "b, c"],
            "vector": [0.1, 0.2, 0.3],
            "unit": {"name": "in", "scale": 2.54},
            "anything": {"k": [1, None]},
        },
        "types": {
            "title": "str",
            "notes": "str",
            "count": "int",
            "percent": "int",
            "ratio": "float",
            "color": "str",
            "size": "int",
            "flag": "bool",
            "photo": "str",
            "point": "list",
            "tags": "list",
            "vector": "list",
            "unit": "dict",
            "anything": "dict",
        },
    }


def test_a_chosen_file_is_uploaded_as_multipart_with_typed_fields(show: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = show("FormZoo")
    image = tmp_path / "grey.png"
    image.write_bytes(_png())
    page.get_by_label("Title").fill("5")
    page.get_by_label("Count").fill("3")
    page.get_by_label("Ratio").fill("0.5")
    page.get_by_label("Color").select_option(label="green")
    page.get_by_label("Size class").select_option(label="2")
    page.get_by_label("Flag").check()
    page.get_by_label("Photo").set_input_files(str(image))
    page.get_by_label("Vector").fill("0.1, 0.2 0.3")
    page.get_by_label("Name", exact=True).select_option(label="in")
    expect(page.get_by_role("img", name="Preview of grey.png")).to_be_visible()

    with page.expect_request(lambda request: request.method == "POST" and "/v1/FormZoo" in request.url) as sent:
        page.get_by_role("button", name="Predict").click()
    received = _received(page)

    assert sent.value.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert received["received"] == {
        "title": "5",
        "count": 3,
        "ratio": 0.5,
        "color": "green",
        "size": 2,
        "flag": True,
        "photo": {"bytes": len(_png()), "png": True},
        "vector": [0.1, 0.2, 0.3],
        "unit": {"name": "in"},
    }
    assert received["types"]["title"] == "str"
    assert received["types"]["count"] == "int"


def test_controls_match_the_schema(show: Any) -> None:
    page = show("FormZoo")

    assert page.get_by_label("Notes").evaluate("e => e.tagName") == "TEXTAREA"
    assert page.get_by_label("Title").evaluate("e => [e.tagName, e.type, e.maxLength]") == ["INPUT", "text", 40]
    count = page.get_by_label("Count")
    assert [count.get_attribute(name) for name in ("type", "min", "max", "step")] == ["number", "1", "10", "1"]
    assert page.get_by_label("Percent").get_attribute("step") == "5"
    assert page.get_by_label("Ratio").get_attribute("step") == "any"
    assert page.get_by_label("Flag").get_attribute("type") == "checkbox"
    assert page.get_by_label("Photo").get_attribute("accept") == "image/png"
    assert page.get_by_label("Color").evaluate("e => [...e.options].map(o => o.text)") == [
        "Choose…",
        "red",
        "green",
        "blue",
    ]
    for required in ("Title", "Count", "Color"):
        assert page.get_by_label(required).evaluate("e => e.required")
    assert not page.get_by_label("Notes").evaluate("e => e.required")


def test_every_control_has_a_label(show: Any) -> None:
    page = show("FormZoo")

    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('[data-model-widget]')].flatMap(host =>
            [...host.shadowRoot.querySelectorAll('input, select, textarea, button')]
              .filter(c => !(c.labels && c.labels.length) && !c.textContent.trim() && !c.getAttribute('aria-label'))
              .map(c => c.outerHTML))"""
    )
    assert unlabelled == []


def test_fill_example_uses_the_schema_examples(show: Any) -> None:
    page = show("FormZoo")

    page.get_by_role("button", name="Fill example").click()
    page.get_by_role("button", name="Predict").click()

    assert _received(page)["received"] == {"title": "from the example", "count": 7, "color": "blue", "flag": True}


@pytest.mark.parametrize(
    ("fields", "invalid", "message_part"),
    [
        ({"Title": "hello", "Count": "11", "Color": "red"}, "Count", ""),
        ({"Title": "hello", "Count": "2"}, "Color", ""),
        ({"Title": "hello", "Count": "2", "Color": "red", "Anything": "{nope"}, "Anything", "Not valid JSON"),
        ({"Title": "hello", "Count": "2", "Color": "red", "Scale": "2"}, "Name", "or leave all of Unit empty"),
    ],
    ids=["number-above-maximum", "required-choice-missing", "malformed-json", "half-filled-optional-object"],
)
def test_input_the_browser_can_check_never_reaches_the_server(
    show: Any, fields: dict[str, str], invalid: str, message_part: str
) -> None:
    page = show("FormZoo")
    posts: list[str] = []
    page.on("request", lambda request: request.method == "POST" and posts.append(request.url))

    for label, value in fields.items():
        control = page.get_by_label(label, exact=True)
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(label=value)
        else:
            control.fill(value)
    page.get_by_role("button", name="Predict").click()

    control = page.get_by_label(invalid, exact=True)
    assert control.evaluate("e => e.matches(':invalid') && e.validationMessage.length > 0")
    assert message_part in control.evaluate("e => e.validationMessage")
    assert control.evaluate("e => e.getRootNode().activeElement === e")
    page.wait_for_timeout(300)  # a request, had one been sent, would be on its way
    assert posts == []


@pytest.mark.parametrize(
    ("model", "fields", "message", "status", "marked"),
    [
        ("Divide", {"A": "1", "B": "0"}, "Cannot divide by zero: b must not be 0", 400, None),
        ("Divide", {"A": "1", "B": "2", "Label": "ABC"}, "'ABC' does not match '^[a-z]*$'", 400, "Label"),
        ("Crashing", {"X": "1"}, "quote the request id when reporting it", 500, None),
    ],
    ids=["400-refused-by-the-model", "400-refused-by-the-schema", "500-model-crashed"],
)
def test_an_error_answer_shows_the_servers_message(
    show: Any, model: str, fields: dict[str, str], message: str, status: int, marked: str | None
) -> None:
    from playwright.sync_api import expect

    page = show(model)
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Predict").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(message)
    expect(alert).to_contain_text(f"HTTP {status}")
    expect(alert).to_contain_text("request id")
    expect(alert).not_to_contain_text("secret")
    if marked:
        field = page.get_by_label(marked, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(page.locator(f"[data-field={marked.lower()}] .msw-field-error")).to_have_text(message)


def test_a_number_result(show: Any) -> None:
    from playwright.sync_api import expect

    page = show("Divide")
    page.get_by_label("A", exact=True).fill("1")
    page.get_by_label("B", exact=True).fill("8")
    page.get_by_role("button", name="Predict").click()

    expect(page.locator(".msw-headline")).to_have_text("0.125")


def test_an_embedding_is_summarised(show: Any) -> None:
    from playwright.sync_api import expect

    page = show("Embedder")
    page.get_by_label("Text").fill("a sentence to embed")
    page.get_by_role("button", name="Predict").click()

    output = page.locator(".msw-output")
    expect(output).to_contain_text("A vector of 32 numbers")
    expect(output.locator("dd").first).to_have_text("32")
    expect(output.locator("dd").nth(1)).to_have_text("1")  # the norm of a unit vector


def test_a_slow_answer_times_out_with_a_clear_message(show: Any) -> None:
    from playwright.sync_api import expect

    page = show("Slow", timeout="1")
    page.get_by_label("Seconds").fill("3")
    page.get_by_role("button", name="Predict").click()

    expect(page.get_by_role("alert")).to_contain_text("The model server did not answer within 1 second.")
    expect(page.get_by_role("button", name="Predict")).to_be_visible()


def test_an_unreachable_server_is_named(show: Any) -> None:
    from playwright.sync_api import expect

    closed = f"http://127.0.0.1:{free_port()}"
    page = show("Divide", endpoint=closed)

    expect(page.get_by_role("alert")).to_contain_text(f"Could not reach the model server at {closed}.")


def test_a_lost_connection_while_predicting(show: Any, page: Any) -> None:
    from playwright.sync_api import expect

    show("Divide")
    page.get_by_label("A", exact=True).fill("1")
    page.get_by_label("B", exact=True).fill("2")
    page.route("**/v1/Divide", lambda route: route.abort("connectionreset"))
    page.route("**/static/widget.js", lambda route: route.abort("connectionreset"))
    page.get_by_role("button", name="Predict").click()

    expect(page.get_by_role("alert")).to_contain_text("Could not reach the model server")


def test_an_unknown_model_shows_the_servers_message(show: Any) -> None:
    from playwright.sync_api import expect

    page = show("NoSuchModel")

    expect(page.get_by_role("alert")).to_contain_text("No model named 'NoSuchModel'")


def test_an_unavailable_model_says_why_and_cannot_be_submitted(show: Any) -> None:
    from playwright.sync_api import expect

    page = show("NotInstalled")

    expect(page.get_by_role("note")).to_contain_text("This model is unavailable on the server: missing Python packages")
    expect(page.get_by_role("button", name="Predict")).to_be_disabled()


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        ("Hello, Leo!", ["Hello, Leo!"]),
        (
            {"label": "setosa", "probabilities": {"setosa": 0.979, "versicolor": 0.021, "virginica": 0.0}},
            ["Label setosa", "setosa: 97.9%", "versicolor: 2.1%", "virginica: 0.0%"],
        ),
        (
            {"digit": 7, "probabilities": [0.01, 0, 0, 0, 0, 0, 0, 0.96, 0.02, 0.01]},
            ["Digit 7", "7: 96.0%", "8: 2.0%"],
        ),
        (
            [{"label": "POSITIVE", "score": 0.9}, {"label": "NEGATIVE", "score": 0.1}],
            ["Label POSITIVE", "POSITIVE: 90.0%"],
        ),
        ({"class": "cat", "confidence": 0.8}, ["Class cat", "Confidence 0.8"]),
        ({"a": 0.25, "b": 0.75}, ["Label b", "b: 75.0%", "a: 25.0%"]),
        ({"logits": 1, "scores": {"x": 2.5, "y": -1.0}}, ["Label x", "x: 2.5", "y: -1"]),
        (
            [0.6, 0.8, 0, 0, 0, 0, 0, 0, 0, 0],
            ["A vector of 10 numbers", "Dimensions 10", "Norm 1", "[0.6, 0.8, 0, 0, 0, 0, 0, 0, …]"],
        ),
        ([[1, 0], [0, 1], [0.6, 0.8]], ["3 vectors of 2 numbers"]),
        ({"embedding": [0.1] * 12, "model": "mini"}, ["Embedding", "Dimensions 12", "Model mini"]),
        ({"nested": {"deep": [1, "two"]}}, ['"deep": [']),
        (42, ["42"]),
        (None, ["null"]),
    ],
    ids=[
        "text",
        "iris-labels-and-probabilities",
        "digit-with-probability-array",
        "pipeline-list",
        "label-and-confidence",
        "bare-probabilities",
        "raw-scores",
        "embedding",
        "embedding-batch",
        "object-holding-an-embedding",
        "generic-json",
        "number",
        "null",
    ],
)
def test_results_are_shown_readably(page: Any, api: ServerProcess, result: Any, shown: list[str]) -> None:
    page.goto(api.url + "/")
    text = page.evaluate(
        """async (value) => {
            const { renderResult } = await import('/static/widget.js');
            const node = renderResult(value);
            document.body.replaceChildren(node);
            return node.innerText.replace(/\\s+/g, ' ');
        }""",
        result,
    )

    for part in shown:
        assert part in text, text


def test_widgets_added_later_are_mounted(show: Any) -> None:
    from playwright.sync_api import expect

    page = show("Divide")
    page.evaluate(
        """(endpoint) => {
            const element = document.createElement('div');
            element.setAttribute('data-model-widget', '');
            element.setAttribute('data-endpoint', endpoint);
            element.setAttribute('data-model', 'Embedder');
            document.body.append(element);
        }""",
        page.locator("[data-model-widget]").first.get_attribute("data-endpoint"),
    )

    expect(page.locator(".msw-title")).to_have_text(["Divide", "Embedder"])


@pytest.mark.parametrize(
    ("theme", "background"), [("light", "rgb(255, 255, 255)"), ("dark", "rgb(21, 27, 38)")], ids=["light", "dark"]
)
def test_themes(show: Any, theme: str, background: str) -> None:
    page = show("Divide", theme=theme)

    assert page.locator(".msw").evaluate("e => getComputedStyle(e).backgroundColor") == background
