"""The browser the page tests use starts headless and renders a page served on localhost."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

PAGE = b"<!doctype html><html lang='de'><body><h1 id='t'>Weltoffene Kommune</h1></body></html>"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def page_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_headless_chromium_renders_a_local_page(
    chromium_executable: str, chromium_args: tuple[str, ...], page_url: str
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=list(chromium_args)
        )
        try:
            page = browser.new_page()
            page.goto(page_url)
            assert page.inner_text("#t") == "Weltoffene Kommune"
            assert page.screenshot()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            browser.close()
