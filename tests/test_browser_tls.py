"""Headless Chromium trusts the stand-ins' certificate, and no other one it would refuse."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.browser


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<h1>hello</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stranger() -> Iterator[str]:
    """An https server on 127.0.0.1 whose certificate comes from some other CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)

    class Server(ThreadingHTTPServer):
        def finish_request(self, request: Any, client_address: Any) -> None:
            assert isinstance(request, socket.socket)
            try:
                wrapped = context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            try:
                super().finish_request(wrapped, client_address)
            finally:
                wrapped.close()

    server = Server(("127.0.0.1", 0), _Hello)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_it_opens_the_fake_kroger_consent_page_over_https(
    browser: Any, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client("tls-app", "tls-secret", {"product.compact"})
    context = browser.new_context()
    try:
        page = context.new_page()
        url = (
            f"{fake_kroger.url}connect/oauth2/authorize?response_type=code&client_id=tls-app"
            "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&scope=product.compact&state=s"
        )
        response = page.goto(url)
        assert response is not None and response.status == 200
        assert page.url.startswith("https://127.0.0.1:")
        assert page.evaluate("window.isSecureContext && location.protocol") == "https:"
        page.get_by_role("button", name="Accept").wait_for()
    finally:
        context.close()


def test_it_still_refuses_a_certificate_from_another_ca(browser: Any, stranger: str) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(stranger)
    finally:
        context.close()
