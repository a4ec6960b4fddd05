"""Swagger UI at /docs in a real browser: "Try it out" uploads a file to Digits and shows the digit.

The OpenAPI document lists `multipart/form-data` with the image as a file
(`contentMediaType`), so Swagger UI shows a file picker; executing the request sends
the picked PNG to the real gunicorn, which answers the digit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PROJECT_ROOT, ServerProcess, free_port, gunicorn_command, running_server

pytestmark = pytest.mark.e2e

DIGIT_SAMPLES = PROJECT_ROOT / "models" / "digits" / "samples"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_WORKERS": "1", "MODEL_LOADING": "lazy"}
    log_path = Path(tmp_path_factory.mktemp("gunicorn")) / "gunicorn.log"
    with running_server(gunicorn_command(), port=port, log_path=log_path, env=env, ready_path="/healthz") as server:
        yield server


@pytest.mark.parametrize("digit", [3, 7])
def test_swagger_ui_try_it_out_uploads_a_file_to_digits(
    page: Any, api: ServerProcess, artifacts_dir: Path, digit: int
) -> None:
    from playwright.sync_api import expect

    page.goto(api.url + "/docs#/Digits/predict_Digits")
    operation = page.locator("#operations-Digits-predict_Digits")
    expect(operation.locator(".opblock-body")).to_be_visible()
    try_it = operation.get_by_role("button", name="Try it out")
    if try_it.count():
        try_it.click()

    operation.locator(".body-param-content-type select").select_option("multipart/form-data")
    picker = operation.locator('input[type="file"]')
    expect(picker).to_have_count(1)
    picker.set_input_files(str(DIGIT_SAMPLES / f"{digit}.png"))
    with page.expect_response(lambda response: response.url.endswith("/v1/Digits")) as answered:
        # Pressed from the keyboard, as a keyboard user does: `click()` first waits for the
        # button to hold still over two animation frames, and once in CI no frame came for
        # 15 s (the deep link's scroll animation, on a loaded machine); a key press needs none.
        operation.get_by_role("button", name="Execute").press("Enter")
    response = answered.value

    assert response.status == 200, response.text()
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.json()["result"]["digit"] == digit
    shown = operation.locator(".live-responses-table .response-col_description pre").first
    expect(shown).to_contain_text('"digit": ' + str(digit))
    page.screenshot(path=str(artifacts_dir / f"docs-upload-{digit}.png"), full_page=False)
    assert json.loads(shown.text_content() or "{}")["result"]["digit"] == digit
