"""Fault injection for tests, and the vocabulary of the fault matrix.

:class:`FaultProxy` is an HTTP proxy between botocore and moto. Requests whose
form body has ``Action=<target>`` get the configured fault; everything else is
forwarded untouched. Faults:

* ``None``: forward (the default);
* ``("status", code)``: answer with that HTTP status and an AWS error body
  (``Throttling`` for 400/429, ``InternalFailure`` for 500,
  ``ServiceUnavailable`` otherwise);
* ``"reset"``: close the connection without answering;
* ``("stall", seconds)``: wait (bounded) before forwarding;
* ``("slow", seconds)``: forward, then wait before answering.

``burst = n`` limits the fault to the next ``n`` target requests.

:class:`TCPFaultProxy` sits in front of a TLS server (the IoT credentials
stand-in) and faults whole connections: ``"reset"``, ``("stall", seconds)``,
``("slow", seconds)``.

The rest (the moments of a credential's life, backoff bounds, running one
moment of a session's life under a fault and checking the outcome against the
expected one) is shared by the rows of the fault matrix (tests/test_faults.py: STS and IoT).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.client
import http.server
import itertools
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import assume_role_chain as arc
from tests.servers import LocalHTTPServer

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
        self.burst: int | None = None  # fault only the next n target requests
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = LocalHTTPServer(self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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
                self.faulted += 1
                if self.burst is not None:
                    self.burst -= 1
                    if self.burst <= 0:
                        self.fault, self.burst = None, None
        if fault == "reset":
            _reset(handler.connection)
            handler.close_connection = True
            return
        if isinstance(fault, tuple) and fault[0] == "status":
            self._answer_error(handler, int(fault[1]))
            return
        if isinstance(fault, tuple) and fault[0] == "stall" and self._release.wait(float(fault[1])):
            handler.close_connection = True  # stopped: nothing is forwarded any more
            return
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
        if status in (400, 429):
            code, message = "Throttling", "Rate exceeded"
        elif status == 500:
            code, message = "InternalFailure", "injected fault"
        else:
            code, message = "ServiceUnavailable", "injected fault"
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


# -- TCP faults (in front of a TLS server) ------------------------------------------------


class TCPFaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``host:port``; the fault applies per connection.

    * ``None``: pipe bytes both ways;
    * ``"reset"``: read the client's first bytes (its TLS ClientHello), then send a RST;
    * ``("stall", seconds)``: accept and never answer (closed after ``seconds`` or at stop);
    * ``("slow", seconds)``: pipe, but hold the server's first bytes for ``seconds``.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.fault: Fault = None
        self.connections: list[float] = []  # time.time() of each accepted connection
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def endpoint(self) -> str:
        """``localhost:port``: the name the stand-in's certificate carries."""
        return f"localhost:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            with self._lock:
                self.connections.append(time.time())
                self._open.add(client)
                fault = self.fault
            threading.Thread(target=self._serve, args=(client, fault), daemon=True).start()

    def _serve(self, client: socket.socket, fault: Fault) -> None:
        upstream: socket.socket | None = None
        try:
            if fault == "reset":
                client.settimeout(5)
                client.recv(4096)
                _reset(client)
                return
            if isinstance(fault, tuple) and fault[0] == "stall":
                self._release.wait(float(fault[1]))
                return
            upstream = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._open.add(upstream)
            delay = float(fault[1]) if isinstance(fault, tuple) and fault[0] == "slow" else 0.0
            pumps = [
                threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True),
                threading.Thread(target=self._pump, args=(upstream, client, delay), daemon=True),
            ]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join(60)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
                    with self._lock:
                        self._open.discard(sock)

    def _pump(self, source: socket.socket, sink: socket.socket, first_delay: float) -> None:
        source.settimeout(30)
        try:
            while chunk := source.recv(65536):
                if first_delay:
                    self._release.wait(first_delay)
                    first_delay = 0.0
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextmanager
def tcp_fault_proxy(host: str, port: int) -> Iterator[TCPFaultProxy]:
    proxy = TCPFaultProxy(host, port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


# -- the fault matrix ------------------------------------------------------------------------
#
# Credentials that live 900 s (the STS minimum) have the windows advisory 225 s,
# mandatory 150 s and margin 60 s before expiry: they are fresh until 675 s after
# issue, in the advisory window until 750 s, in the mandatory window until 840 s,
# and unusable from then on (expiry at 900 s).

BACKOFF_BASE, BACKOFF_CAP, JITTER = 1.0, 30.0, (0.5, 1.0)  # as in assume_role_chain
SLACK = 1.5  # seconds added to a timeout: generous, as the wait is a bound, not a performance figure


@dataclasses.dataclass(frozen=True)
class Moment:
    """One API call at each of ``times`` (seconds after the credentials were issued)."""

    name: str
    times: tuple[int, ...]

    @property
    def recovery(self) -> int:
        """When a call must succeed once the fault has ended: after the longest backoff."""
        return max(self.times[-1] + int(BACKOFF_CAP) + 1, 700)


MOMENTS = {
    moment.name: moment
    for moment in (
        Moment("fresh", (60, 210, 360, 510, 660)),  # nothing is due: the fault is never seen
        Moment("advisory", tuple(range(680, 686))),  # 220..215 s left, a call a second
        Moment("mandatory", tuple(range(760, 766))),  # 140..135 s left
        # inside the 60 s margin, a call a second, then sparser and past expiry (900 s)
        Moment("expired", (*range(845, 851), 875, 905)),
    )
}

ALL = -1  # "every API call made in the moment fails"


@dataclasses.dataclass(frozen=True)
class Expected:
    failed: int  # 0 or ALL
    fetches: str  # "0", "1" or "backoff": one attempt per backoff interval


def parse_matrix(table: str) -> dict[tuple[str, str], Expected]:
    """``failed/fetches`` cells of a whitespace table: a header of moments, a row per fault."""
    header, *rows = (line.split() for line in table.strip().splitlines())
    matrix = {}
    for fault, *cells in rows:
        for moment, cell in zip(header[1:], cells, strict=True):
            failed, fetches = cell.split("/")
            matrix[fault, moment] = Expected(ALL if failed == "all" else int(failed), fetches)
    return matrix


def backoff_delay(failures: int) -> float:
    """The un-jittered delay after ``failures`` consecutive failures."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (failures - 1))


def backoff_attempts(times: tuple[int, ...], jitter: float) -> int:
    """Attempts a failing source gets when called at ``times`` with a fixed jitter factor."""
    attempts, next_attempt = 0, float("-inf")
    for now in times:
        if now >= next_attempt:
            attempts += 1
            next_attempt = now + backoff_delay(attempts) * jitter
    return attempts


def backoff_bounds(times: tuple[int, ...]) -> tuple[int, int]:
    """Fewest (longest jitter) and most (shortest jitter) attempts at ``times``."""
    return backoff_attempts(times, JITTER[1]), backoff_attempts(times, JITTER[0])


def check_backoff_spacing(attempts: list[float], times: tuple[int, ...]) -> None:
    """After each failure the next attempt is the first call once the jittered backoff has passed."""
    for number, (before, after) in enumerate(itertools.pairwise(attempts), start=1):
        delay = backoff_delay(number)
        earliest = min(t for t in times if t >= before + JITTER[0] * delay)
        latest = min((t for t in times if t >= before + JITTER[1] * delay), default=times[-1])
        assert earliest <= after <= latest, f"attempt at {after} s after failure {number} at {before} s: backoff {delay} s"


@contextmanager
def refresh_attempts(source: str) -> Iterator[list[tuple[float, str]]]:
    """(fake-clock time, outcome) of every refresh attempt of ``source``."""
    seen: list[tuple[float, str]] = []

    def listener(event: arc.RefreshEvent) -> None:
        if event.source == source and event.outcome != "cache-hit":
            seen.append((time.time(), event.outcome))

    arc.add_refresh_listener(listener)
    try:
        yield seen
    finally:
        arc.remove_refresh_listener(listener)


@dataclasses.dataclass
class Cell:
    """What happened to one session while a fault lasted through one moment, and after."""

    moment: Moment
    calls: int = 0
    errors: list[BaseException] = dataclasses.field(default_factory=list)
    waits: list[float] = dataclasses.field(default_factory=list)  # wall seconds of each API call
    attempts: list[float] = dataclasses.field(default_factory=list)  # seconds after issue of each fetch
    outcomes: list[str] = dataclasses.field(default_factory=list)  # of those fetches
    keys: tuple[str, str | None, str] = ("", None, "")  # access key before, during (if usable), after
    recovered: list[str] = dataclasses.field(default_factory=list)  # fetches after the fault ended

    @property
    def slowest(self) -> float:
        return max(self.waits, default=0.0)

    @property
    def slowest_without_fetch(self) -> float:
        """The longest wait of the calls that made no fetch (inside a backoff interval)."""
        waits = [wait for second, wait in zip(self.moment.times, self.waits, strict=True) if second not in self.attempts]
        return max(waits, default=0.0)

    def row(self, *labels: object) -> str:
        """A row of the measured table in docs/RELIABILITY.md (``pytest -s`` prints it)."""
        cells = (*labels, self.moment.name, f"{len(self.errors)}/{self.calls}", len(self.attempts),
                 f"{self.slowest:.2f} s", f"{self.slowest_without_fetch:.3f} s")
        return "| " + " | ".join(str(cell) for cell in cells) + " |"


START = dt.datetime(2026, 11, 21, 12, 0, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return START + dt.timedelta(seconds=seconds)


def frozen_key(session: Any) -> str:
    return str(session.get_credentials().get_frozen_credentials().access_key)


def run_moment(session: Any, source: str, moment: Moment, move_to: Callable[[dt.datetime], Any],
               inject: Callable[[], None], heal: Callable[[], None]) -> Cell:
    """Issue credentials at 0 s, inject the fault, call at the moment's times, heal, recover."""
    cell = Cell(moment)
    s3 = session.client("s3")
    with refresh_attempts(source) as attempts:
        move_to(at(0))
        s3.list_buckets()
        before, attempts[:] = frozen_key(session), []
        inject()
        for second in moment.times:
            move_to(at(second))
            started = time.perf_counter()
            try:
                s3.list_buckets()
            except Exception as error:  # the test asserts on what failed
                cell.errors.append(error)
            cell.calls += 1
            cell.waits.append(time.perf_counter() - started)
        cell.attempts = [moment_ - START.timestamp() for moment_, _ in attempts]
        cell.outcomes = [outcome for _, outcome in attempts]
        during = frozen_key(session) if moment.name != "expired" else None
        heal()
        move_to(at(moment.recovery))
        s3.list_buckets()  # must succeed once the fault has ended
        cell.recovered = [outcome for _, outcome in attempts[len(cell.attempts):]]
        cell.keys = (before, during, frozen_key(session))
    return cell


def check_cell(cell: Cell, expected: Expected, error: tuple[type[Exception], str], source: str, timeout: float) -> None:
    """The expected outcome of the matrix, plus the bounds every cell shares."""
    name = cell.moment.name
    backoff = expected.fetches == "backoff"
    # API calls that fail, and with what: the source's own error, naming the source
    assert len(cell.errors) == (cell.calls if expected.failed == ALL else expected.failed), (name, cell.errors[:1])
    for raised in cell.errors:
        assert isinstance(raised, error[0]) and error[1] in str(raised), (name, repr(raised))
        if sys.version_info >= (3, 11):  # exception notes (add_note) are new in 3.11
            assert any(source in note and "no usable credentials" in note for note in getattr(raised, "__notes__", ()))
    if backoff and name != "expired":
        assert cell.keys[1] == cell.keys[0], f"{name}: static stability, the current credentials keep serving"
    # fetches: bounded and spaced by the backoff; calls between them do not wait
    if backoff:
        fewest, most = backoff_bounds(cell.moment.times)
        assert fewest <= len(cell.attempts) <= most, f"{name}: {len(cell.attempts)} fetches for {cell.calls} calls"
        assert set(cell.outcomes) == {"failed"}
        check_backoff_spacing(cell.attempts, cell.moment.times)
        assert cell.slowest_without_fetch < timeout, f"{name}: calls inside the backoff interval do not wait"
    else:
        assert len(cell.attempts) == int(expected.fetches) and set(cell.outcomes) <= {"fetched"}, name
    # the slowest call waits for one fetch at most: bounded by the timeout
    assert cell.slowest <= timeout + SLACK, f"{name}: a call waited {cell.slowest:.2f} s"
    # recovery: new credentials, with one fetch unless the fault never stopped one
    assert cell.keys[2] != cell.keys[0], name
    assert cell.recovered == ([] if not backoff and cell.attempts else ["fetched"]), name

