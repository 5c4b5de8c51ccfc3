"""Local peers for the tests: a raw mutual-TLS responder that sends whatever bytes a
test wants (hostile IoT credentials-provider answers), an STS endpoint that
refuses every request, a closed port, and running code as another user.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

# ---------------------------------------------------------------------------
# Servers: a hostile IoT credentials provider, an STS that refuses everything
# ---------------------------------------------------------------------------


_Loop = TypeVar("_Loop", bound="AcceptLoop")


class LocalHTTPServer(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 for many clients at once: a thread per request, and a
    listen backlog deep enough for a fleet of worker processes connecting together
    (http.server's default of 5 drops handshakes, which clients see as closed connections)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)


class AcceptLoop:
    """A TCP server on 127.0.0.1 and a free port: :meth:`_handle` serves each connection in a thread."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])

    def start(self: _Loop) -> _Loop:
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raise NotImplementedError


def read_request_head(sock: socket.socket, head: bytes = b"") -> bytes | None:
    """Read up to the blank line that ends an HTTP request head (``head``: what was read
    already); ``None`` if the peer closed before it."""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        head += chunk
    return head


class RawResponder(AcceptLoop):
    """Mutual-TLS server on 127.0.0.1: reads one request head, sends ``answer`` verbatim, closes.

    ``stall`` makes it send nothing until :meth:`stop` (or 10 s).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.answer = b""
        self.stall = False
        super().__init__()
        self.start()

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with contextlib.suppress(OSError, ValueError), self.context.wrap_socket(raw, server_side=True) as tls:
                if read_request_head(tls) is None:
                    return
                if self.stall:
                    self._stop.wait(10)
                    return
                tls.sendall(self.answer)
                tls.settimeout(2)
                tls.unwrap()  # close_notify, as a well-behaved server would
        finally:
            raw.close()


def http_answer(status: int | bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    status_line = status if isinstance(status, bytes) else f"HTTP/1.1 {status} X".encode()
    return status_line + b"\r\n" + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body


class LocalSTS:
    """An HTTP endpoint on 127.0.0.1 for STS: every POST gets what :meth:`answer` returns."""

    def __init__(self) -> None:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = endpoint.answer()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = LocalHTTPServer(Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self) -> tuple[int, bytes]:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RefusingSTS(LocalSTS):
    """An HTTP endpoint answering every request with an STS ``AccessDenied`` error."""

    BODY = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            b"<Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRole</Message></Error>"
            b"<RequestId>refused</RequestId></ErrorResponse>")

    def answer(self) -> tuple[int, bytes]:
        return 403, self.BODY


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------
# Other users
# ---------------------------------------------------------------------------

OTHER_UID = 4242


def require(available: bool, what: str) -> None:
    """Skip with a reason on a laptop; fail in CI (CI=true), like tests/iot/conftest.py."""
    if available:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI (CI=true)", pytrace=False)
    pytest.skip(f"{what} is not available")


def as_other_user(action: Callable[[], None], cwd: str | os.PathLike[str]) -> None:
    """Run ``action`` in a forked child with uid and gid :data:`OTHER_UID` (needs root).

    The child starts in ``cwd``: use relative paths (the other user may not
    search the folders above it).
    """
    require(hasattr(os, "geteuid") and os.geteuid() == 0, "root (to create files as another user)")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.chdir(cwd)
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            os.umask(0o077)
            action()
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the action as another user failed"
