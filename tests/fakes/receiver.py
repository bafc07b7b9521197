"""A webhook receiver on 127.0.0.1 over https (the test CA): records every delivery and answers
with the status codes it is told to, in turn (200 once they run out)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.tls import TLSServerMixin


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered


class _Server(TLSServerMixin, ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a killed worker, a refused certificate): nothing to say


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        # Recorded before on_receive runs: a test that kills the sender from there reads
        # ``received`` as soon as the sender is dead, which may be before this thread goes on.
        with receiver.lock:
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            receiver.received.append(Received(self.path, headers, body, status))
        if receiver.on_receive is not None:
            receiver.on_receive(headers, body)
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", receiver.redirect_to or "/elsewhere")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class Receiver:
    def __init__(self, *, tls: bool = True) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.redirect_to = ""
        self.on_receive: Callable[[dict[str, str], bytes], None] | None = None
        self.lock = threading.Lock()
        self.tls = tls
        server_class = _Server if tls else _PlainServer
        self._server = server_class(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hooks", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, *statuses: int) -> None:
        with self.lock:
            self.statuses.extend(statuses)

    @property
    def ok(self) -> list[Received]:
        return [item for item in self.received if 200 <= item.status < 300]


class _PlainServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver
