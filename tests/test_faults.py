"""One fault matrix: fault x moment of a credential's life x source kind.

Source kinds: ``sts`` (every AssumeRole request goes through
:class:`tests.faults.FaultProxy` in front of moto), ``iot-ssl`` and
``iot-awscrt`` (the IoT client talks mTLS to the stand-in through
:class:`tests.faults.TCPFaultProxy`: connection resets, stalls, slow answers;
HTTP errors and a stall after the handshake come from the stand-in's own
modes). Both issue 900 s credentials, so the moments (tests/faults.py) and the
expected outcomes are shared. API calls (S3 ListBuckets) go to moto directly.
The clock is time-machine's (moto runs in-process, so its clock moves too);
timeouts and waits are real. botocore's retries are off (one attempt per
AssumeRole) except in the test that shows how they compose with the engine's
backoff. The last tests are STS only: 16 threads on one stalled attempt, and
botocore's retries inside the engine's backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
import iot_x509
from tests.conftest import role_arn
from tests.faults import (
    MOMENTS,
    SLACK,
    FaultProxy,
    TCPFaultProxy,
    at,
    check_cell,
    fault_proxy,
    parse_matrix,
    run_moment,
    tcp_fault_proxy,
)
from tests.iot.conftest import iot, iot_world  # noqa: F401  (fixtures of the IoT rows, used by name below)
from tests.iot.iot_standin import IoTWorld

TIMEOUT = 0.6  # connect and read timeout of the STS client, seconds (moto answers in 0.02-0.2 s on two busy cores)
STS_CONFIG = botocore.config.Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"total_max_attempts": 1})
IOT_TIMEOUT = {"ssl": 0.8, "awscrt": 1.0}  # iot_session(timeout=...): one deadline per fetch; a fresh mutual-TLS
# fetch takes 0.2-0.4 s on two busy cores (three test workers), and "slow" adds 0.1 s to it
IOT_SOURCE = "iot:device-role"

# Expected outcome: failed API calls / credential fetches (AssumeRole calls for
# STS) made while the fault lasts. "backoff": one call per backoff interval (1 s
# doubling to 30 s, jittered to 50-100 %), so between backoff_bounds() of the
# moment's API calls; "all": every API call fails, with the source's error.
# The credentials live 900 s; the moments are defined in tests/faults.py.
# stall-http (a stall after the TLS handshake) is an IoT fault only.
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

Error = tuple[type[Exception], str]  # the error API calls raise when no credentials remain

# fault -> (what the proxy does, the error)
STS_FAULTS: dict[str, tuple[Any, Error]] = {
    "503": (("status", 503), (botocore.exceptions.ClientError, "(ServiceUnavailable)")),
    "500": (("status", 500), (botocore.exceptions.ClientError, "(InternalFailure)")),
    "throttling": (("status", 400), (botocore.exceptions.ClientError, "(Throttling)")),
    "reset": ("reset", (botocore.exceptions.ConnectionClosedError, "Connection was closed")),
    "stall": (("stall", 3), (botocore.exceptions.ReadTimeoutError, "Read timeout")),
    "slow": (("slow", TIMEOUT / 4), (Exception, "")),  # answers within the timeout
}

Inject = Callable[[IoTWorld, TCPFaultProxy], None]


def iot_status(code: int, message: str) -> Inject:
    def inject(world: IoTWorld, _: TCPFaultProxy) -> None:
        world.server.behaviour.status, world.server.behaviour.message = code, message
        world.server.behaviour.mode = "status"

    return inject


def tcp(fault: Any) -> Inject:
    def inject(_: IoTWorld, proxy: TCPFaultProxy) -> None:
        proxy.fault = fault

    return inject


def http_stall(world: IoTWorld, _: TCPFaultProxy) -> None:
    world.server.behaviour.mode = "stall"  # handshake done, no answer


# fault -> (how to inject it, the error)
IOT_FAULTS: dict[str, tuple[Inject, Error]] = {
    "503": (iot_status(503, "Slow down"), (iot_x509.IoTHTTPError, "HTTP 503")),
    "500": (iot_status(500, "Internal failure"), (iot_x509.IoTHTTPError, "HTTP 500")),
    "throttling": (iot_status(429, "Rate exceeded"), (iot_x509.IoTHTTPError, "HTTP 429")),
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

CASES = (
    [("sts", fault, moment) for fault in STS_FAULTS for moment in MOMENTS]
    + [("iot-ssl", fault, moment) for fault in IOT_FAULTS for moment in MOMENTS]
    + [("iot-awscrt", fault, moment) for fault in AWSCRT_FAULTS for moment in AWSCRT_MOMENTS]
)


@dataclass
class Source:
    """One source kind under one fault: a fresh session, the fault on and off, the requests it made."""

    label: tuple[str, ...]  # the first cells of the printed row
    name: str  # the source name that errors and refresh events carry
    session: boto3.Session
    inject: Callable[[], None]
    heal: Callable[[], None]
    requests: Callable[[], int]  # AssumeRole requests (STS) or TLS connections (IoT) so far
    error: Error
    timeout: float  # the longest one fetch may take
    most_requests_per_fetch: int  # awscrt may open one more connection to name an untrusted server


def sts_source(request: pytest.FixtureRequest, fault: str, moment: str) -> Iterator[Source]:
    proxy: FaultProxy = request.getfixturevalue("proxy")
    base = boto3.Session()  # the parent of the role (its children share its botocore data loader)
    arc.whoami(arc.assume_role(base, role_arn("warm-up")))  # moto's first AssumeRole is slow
    injected, error = STS_FAULTS[fault]
    role = role_arn(f"faults-{fault}-{moment}")

    def inject() -> None:
        proxy.fault = injected

    def heal() -> None:
        proxy.fault = None

    session = arc.assume_role(base, role, DurationSeconds=900, sts_client_kwargs={"config": STS_CONFIG})
    yield Source(("STS", fault), role, session, inject, heal, lambda: proxy.count("AssumeRole"), error, 2 * TIMEOUT, 1)


def iot_source(request: pytest.FixtureRequest, transport: str, fault: str) -> Iterator[Source]:
    world: IoTWorld = request.getfixturevalue("iot")
    world.server.behaviour.lifetime = 900
    injected, error = IOT_FAULTS[fault]
    with tcp_fault_proxy("127.0.0.1", world.server.port) as proxy:

        def heal() -> None:
            world.server.behaviour.mode = "ok"
            world.server.release.set()  # ends the stand-in's stalls
            world.server.release = threading.Event()  # for later stalls
            proxy.fault = None

        world.provider("ec", endpoint=proxy.endpoint, transport=transport)()  # warm up: the first TLS set-up is slow
        session = world.session("ec", endpoint=proxy.endpoint, timeout=IOT_TIMEOUT[transport], transport=transport)
        yield Source(("IoT", transport, fault), IOT_SOURCE, session, lambda: injected(world, proxy), heal,
                     lambda: len(proxy.connections), error, IOT_TIMEOUT[transport], 1 if transport == "ssl" else 2)
    world.server.release.set()


@pytest.fixture
def source(request: pytest.FixtureRequest, kind: str, fault: str, moment: str) -> Iterator[Source]:
    if kind == "sts":
        yield from sts_source(request, fault, moment)
    else:
        yield from iot_source(request, kind.removeprefix("iot-"), fault)


@pytest.mark.parametrize(("kind", "fault", "moment"), CASES)
def test_fault_at_each_moment(source: Source, clock: time_machine.Traveller, kind: str, fault: str, moment: str) -> None:
    requests = source.requests()
    cell = run_moment(source.session, source.name, MOMENTS[moment], clock.move_to, source.inject, source.heal)
    print(cell.row(*source.label))
    check_cell(cell, MATRIX[fault, moment], source.error, source.name, source.timeout)
    # one request per fetch (the first, those of the moment, the recovery)
    fetches = 1 + len(cell.attempts) + len(cell.recovered)
    made = source.requests() - requests
    assert fetches <= made <= source.most_requests_per_fetch * fetches, (moment, made, fetches)


@pytest.fixture
def base(proxy: FaultProxy) -> boto3.Session:
    """The parent of every role of an STS-only test (its children share its botocore data loader)."""
    session = boto3.Session()
    arc.whoami(arc.assume_role(session, role_arn("warm-up")))  # moto's first AssumeRole is slow
    return session


def stampede(call: Callable[[], Any], threads: int) -> tuple[list[float], list[BaseException]]:
    """``threads`` threads make one call each at once: the wall time of each, the errors."""
    barrier = threading.Barrier(threads)
    waits: list[float] = []
    errors: list[BaseException] = []

    def timed() -> None:
        barrier.wait(30)
        started = time.perf_counter()
        try:
            call()
        except Exception as error:  # the test asserts on what failed
            errors.append(error)
        waits.append(time.perf_counter() - started)

    running = [threading.Thread(target=timed) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(30)
    return waits, errors


def test_16_threads_share_one_stalled_attempt(proxy: FaultProxy, base: boto3.Session, clock: time_machine.Traveller) -> None:
    """Concurrent calls in the advisory and mandatory windows and without usable credentials."""
    for moment, second in (("advisory", 680), ("mandatory", 760), ("expired", 845)):
        role = role_arn(f"faults-threads-{moment}")
        session = arc.assume_role(base, role, DurationSeconds=900, sts_client_kwargs={"config": STS_CONFIG})
        s3 = session.client("s3", config=botocore.config.Config(max_pool_connections=16))
        clock.move_to(at(0))
        s3.list_buckets()
        proxy.fault, requests = ("stall", 3), proxy.count("AssumeRole")
        clock.move_to(at(second))
        waits, errors = stampede(s3.list_buckets, 16)
        proxy.fault = None
        assert proxy.count("AssumeRole") - requests == 1, f"{moment}: one attempt for all the threads"
        assert len(errors) == (16 if moment == "expired" else 0) and len(waits) == 16, moment
        assert all(isinstance(error, botocore.exceptions.ReadTimeoutError) for error in errors)
        assert max(waits) <= 2 * TIMEOUT + SLACK, moment
        print(f"| STS, 16 threads | stall | {moment} | {len(errors)}/16 | 1 | {max(waits):.2f} s |")


def test_botocore_retries_compose_with_the_backoff(aws_env: str, clock: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's default retries (standard mode, 3 attempts) run inside each engine attempt.

    The mode is named because older botocore (the supported floor) defaults to ``legacy``.
    """
    config = botocore.config.Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"mode": "standard"})
    retry_sleeps = 1 + 2  # standard mode: at most 1 s, then at most 2 s between the 3 attempts
    bound = 3 * 2 * TIMEOUT + retry_sleeps + SLACK
    with fault_proxy(aws_env) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", proxy.url)
        session = arc.assume_role(boto3.Session(), role_arn("faults-retries"), DurationSeconds=900,
                                  sts_client_kwargs={"config": config})
        s3 = session.client("s3")
        s3.list_buckets()
        proxy.fault = ("status", 503)

        def call_at(second: int) -> tuple[int, float, BaseException | None]:
            clock.move_to(at(second))
            before, started, error = proxy.count("AssumeRole"), time.perf_counter(), None
            try:
                s3.list_buckets()
            except botocore.exceptions.ClientError as raised:
                error = raised
            return proxy.count("AssumeRole") - before, time.perf_counter() - started, error

        made, waited, error = call_at(700)  # advisory: the call succeeds after 3 failed requests
        assert (made, error) == (3, None) and waited <= bound
        assert call_at(700)[0] == 0  # inside the backoff interval: no request
        made, waited, error = call_at(845)  # no usable credentials: the call fails after 3 requests
        assert made == 3 and waited <= bound
        assert error is not None and "ServiceUnavailable" in str(error) and "reached max retries: 2" in str(error)
        made, _, error = call_at(845)
        assert made == 0 and error is not None  # fails fast
        proxy.fault, proxy.burst = ("status", 503), 2  # a burst shorter than botocore's attempts
        made, waited, error = call_at(845 + 31)
        assert (made, error) == (3, None) and waited <= bound, "botocore absorbed the burst in one engine attempt"
