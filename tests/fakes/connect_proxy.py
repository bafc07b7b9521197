"""An outgoing HTTP proxy on 127.0.0.1 for the tests: it tunnels ``CONNECT host:port``, as a
company's egress proxy does for https, and records each tunnel it opened.

With ``credentials`` set ("user:password"), a CONNECT without the matching
``Proxy-Authorization: Basic`` header gets 407 and no tunnel.
"""

from __future__ import annotations

import base64
import io
import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class ConnectProxy:
    credentials: str | None = None
    tunnels: list[str] = field(default_factory=list)  # "host:port" of every tunnel opened
    refused: int = 0  # CONNECTs answered 407
    url: str = ""
    _server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> ConnectProxy:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.connection, self.rfile)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, client: socket.socket, rfile: io.BufferedIOBase) -> None:
        request_line = rfile.readline().decode("latin-1")
        headers: dict[str, str] = {}
        while (line := rfile.readline().decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        method, target, _ = [*request_line.split(), "", "", ""][:3]
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self.refused += 1
                client.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="egress"\r\nContent-Length: 0\r\n\r\n'
                )
                return
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.tunnels.append(target)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _pipe(client, upstream)


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {one: other, other: one}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [], 10)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                peers[sock].sendall(data)
    except OSError:
        return
    finally:
        other.close()
