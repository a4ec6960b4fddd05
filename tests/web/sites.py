"""Small HTTP servers for browser tests: a foreign website that embeds the widget.

`StaticSite` serves pages held in a dict from its own loopback port, which makes it a
different origin from the API, as another company's website would be.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port


def html_page(title: str, body: str) -> str:
    """A complete HTML document around `body`."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request, so no 404 in the console
        f"<title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )


@dataclass
class StaticSite:
    """A website on http://127.0.0.1:<port>: `pages` maps a path to its HTML."""

    port: int
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path


def _handler_for(site: StaticSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = site.pages.get(self.path.split("?", 1)[0])
            body = (page if page is not None else "not found").encode()
            self.send_response(200 if page is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8" if page is not None else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    return Handler


@contextmanager
def serving_static_site(port: int | None = None) -> Iterator[StaticSite]:
    """Run a `StaticSite` in a thread until the block ends."""
    site = StaticSite(port or free_port())
    server = ThreadingHTTPServer(("127.0.0.1", site.port), _handler_for(site))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"static-site-{site.port}", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
