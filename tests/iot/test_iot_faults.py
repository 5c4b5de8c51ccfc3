"""Faults between the IoT client and the credentials provider, at each moment of a credential's life.

The client talks mTLS to the stand-in through :class:`tests.faults.TCPFaultProxy`
(connection resets, stalls, slow answers); HTTP errors and a stall after the
handshake come from the stand-in's own modes. The stand-in issues 900 s
credentials, so the moments and the notation are those of the STS matrix
(tests/test_faults.py). API calls (S3 ListBuckets) go to moto.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine

import iot_x509
from tests.faults import MOMENTS, TCPFaultProxy, check_cell, parse_matrix, run_moment, tcp_fault_proxy

from .iot_standin import IoTWorld

TIMEOUT = {"ssl": 0.4, "awscrt": 0.5}  # iot_session(timeout=...): one deadline per fetch
SOURCE = "iot:device-role"

# Expected outcome: failed API calls / credential fetches while the fault lasts.
MATRIX = parse_matrix(
    """
    fault       fresh  advisory   mandatory  expired
    503         0/0    0/backoff  0/backoff  all/backoff
    500         0/0    0/backoff  0/backoff  all/backoff
    throttling  0/0    0/backoff  0/backoff  all/backoff
    reset       0/0    0/backoff  0/backoff  all/backoff
    stall       0/0    0/backoff  0/backoff  all/backoff
    stall-http  0/0    0/backoff  0/backoff  all/backoff
    slow        0/0    0/1        0/1        0/1
    """
)

Inject = Callable[[IoTWorld, TCPFaultProxy], None]


def status(code: int, message: str) -> Inject:
    def inject(iot: IoTWorld, _: TCPFaultProxy) -> None:
        iot.server.behaviour.status, iot.server.behaviour.message = code, message
        iot.server.behaviour.mode = "status"

    return inject


def tcp(fault: Any) -> Inject:
    def inject(_: IoTWorld, proxy: TCPFaultProxy) -> None:
        proxy.fault = fault

    return inject


def http_stall(iot: IoTWorld, _: TCPFaultProxy) -> None:
    iot.server.behaviour.mode = "stall"  # handshake done, no answer


# fault -> (how to inject it, the error API calls raise when no credentials remain)
FAULTS: dict[str, tuple[Inject, tuple[type[Exception], str]]] = {
    "503": (status(503, "Slow down"), (iot_x509.IoTHTTPError, "HTTP 503")),
    "500": (status(500, "Internal failure"), (iot_x509.IoTHTTPError, "HTTP 500")),
    "throttling": (status(429, "Rate exceeded"), (iot_x509.IoTHTTPError, "HTTP 429")),
    "reset": (tcp("reset"), (iot_x509.IoTConnectionError, "localhost:")),
    "stall": (tcp(("stall", 3)), (iot_x509.IoTTimeoutError, "timed out after")),
    "stall-http": (http_stall, (iot_x509.IoTTimeoutError, "waiting for the response")),
    "slow": (tcp(("slow", 0.1)), (Exception, "")),  # answers within the timeout
}
# awscrt differs from ssl in how it connects, not in what the engine does with a
# failure: its connection faults are tested where a caller waits or fails. (Its wait
# for a stalled answer: tests/iot/test_iot_errors.py::test_a_stalled_server_times_out.)
AWSCRT_FAULTS = ("reset", "stall", "slow")
AWSCRT_MOMENTS = ("mandatory", "expired")


@pytest.fixture
def proxy(iot: IoTWorld) -> Iterator[TCPFaultProxy]:
    iot.server.behaviour.lifetime = 900
    with tcp_fault_proxy("127.0.0.1", iot.server.port) as running:
        yield running
    iot.server.release.set()


@pytest.mark.parametrize(
    ("transport", "fault"),
    [("ssl", fault) for fault in FAULTS] + [("awscrt", fault) for fault in AWSCRT_FAULTS],
)
def test_fault_at_each_moment(iot: IoTWorld, proxy: TCPFaultProxy, clock: time_machine.Traveller,
                              transport: str, fault: str) -> None:
    injected, error = FAULTS[fault]

    def heal() -> None:
        iot.server.behaviour.mode = "ok"
        iot.server.release.set()  # ends the stand-in's stalls
        iot.server.release = threading.Event()  # for the next moment's stalls
        proxy.fault = None

    iot.provider("ec", endpoint=proxy.endpoint, transport=transport)()  # warm up: the first TLS set-up is slow
    for moment in MOMENTS.values():
        if transport == "awscrt" and moment.name not in AWSCRT_MOMENTS:
            continue
        session = iot.session("ec", endpoint=proxy.endpoint, timeout=TIMEOUT[transport], transport=transport)
        connections = len(proxy.connections)
        cell = run_moment(session, SOURCE, moment, clock.move_to, lambda: injected(iot, proxy), heal)
        print(cell.row("IoT", transport, fault))
        check_cell(cell, MATRIX[fault, moment.name], error, SOURCE, TIMEOUT[transport])
        # one TLS connection per fetch; awscrt may add one to name an untrusted server
        fetches = 1 + len(cell.attempts) + len(cell.recovered)
        made = len(proxy.connections) - connections
        assert fetches <= made <= (fetches if transport == "ssl" else 2 * fetches), (moment.name, made, fetches)
