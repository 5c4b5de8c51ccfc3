"""A fault-injecting HTTP proxy for tests: sits between botocore and moto.

Requests whose form body has ``Action=<target>`` get the configured fault;
everything else is forwarded untouched. Faults:

* ``None``: forward (the default);
* ``("status", code)``: answer with that HTTP status and an AWS error body
  (``Throttling`` for 400/429, ``ServiceUnavailable`` otherwise);
* ``"reset"``: close the connection without answering;
* ``("stall", seconds)``: wait (bounded) before forwarding;
* ``("slow", seconds)``: forward, then wait before answering.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Fault = Any

_ERROR_BODY = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    "<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
)


class FaultProxy:
    """A proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str, target: str = "AssumeRole") -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.target = target
        self.fault: Fault = None
        self.seen: list[str] = []  # Action of every request received
        self.faulted = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, action: str | None = None) -> int:
        with self._lock:
            return sum(1 for seen in self.seen if action is None or seen == action)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

        return Handler

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        with self._lock:
            self.seen.append(action)
        fault = self.fault if action == self.target else None
        if fault is not None:
            with self._lock:
                self.faulted += 1
        if fault == "reset":
            _reset(handler.connection)
            handler.close_connection = True
            return
        if isinstance(fault, tuple) and fault[0] == "status":
            self._answer_error(handler, int(fault[1]))
            return
        if isinstance(fault, tuple) and fault[0] == "stall":
            self._release.wait(float(fault[1]))
        status, headers, answer = self._forward(handler, body)
        if isinstance(fault, tuple) and fault[0] == "slow":
            self._release.wait(float(fault[1]))
        try:
            handler.send_response(status)
            for name, value in headers:
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        except OSError:
            handler.close_connection = True

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            headers = {name: value for name, value in handler.headers.items() if name.lower() != "host"}
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    @staticmethod
    def _answer_error(handler: http.server.BaseHTTPRequestHandler, status: int) -> None:
        code, message = ("Throttling", "Rate exceeded") if status in (400, 429) else ("ServiceUnavailable", "injected fault")
        answer = _ERROR_BODY.format(code=code, message=message).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "text/xml")
        handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)


def _reset(connection: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send a TCP RST.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


@contextmanager
def fault_proxy(upstream: str, target: str = "AssumeRole") -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, target)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
