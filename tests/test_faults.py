"""Faults between botocore and STS, at each moment of a credential's life.

Every AssumeRole request goes through :class:`tests.faults.FaultProxy` in
front of moto; API calls (S3 ListBuckets) go to moto directly. The clock is
time-machine's (moto runs in-process, so its clock moves too); timeouts and
waits are real. botocore's retries are off (one attempt per AssumeRole) except
in the test that shows how they compose with the engine's backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
import time_machine

import assume_role_chain as arc
from tests.conftest import role_arn
from tests.faults import MOMENTS, SLACK, FaultProxy, at, check_cell, fault_proxy, parse_matrix, run_moment

TIMEOUT = 0.4  # connect and read timeout of the STS client, seconds
STS_CONFIG = botocore.config.Config(connect_timeout=TIMEOUT, read_timeout=TIMEOUT, retries={"total_max_attempts": 1})

# Expected outcome: failed API calls / AssumeRole calls made while the fault lasts.
# "backoff": one call per backoff interval (1 s doubling to 30 s, jittered to
# 50-100 %), so between backoff_bounds() of the moment's API calls; "all": every
# API call fails, with the source's error. The credentials live 900 s; the
# moments are defined in tests/faults.py.
MATRIX = parse_matrix(
    """
    fault       fresh  advisory   mandatory  expired
    503         0/0    0/backoff  0/backoff  all/backoff
    500         0/0    0/backoff  0/backoff  all/backoff
    throttling  0/0    0/backoff  0/backoff  all/backoff
    reset       0/0    0/backoff  0/backoff  all/backoff
    stall       0/0    0/backoff  0/backoff  all/backoff
    slow        0/0    0/1        0/1        0/1
    """
)

# fault -> (what the proxy does, the error API calls raise when no credentials remain)
FAULTS: dict[str, tuple[Any, tuple[type[Exception], str]]] = {
    "503": (("status", 503), (botocore.exceptions.ClientError, "(ServiceUnavailable)")),
    "500": (("status", 500), (botocore.exceptions.ClientError, "(InternalFailure)")),
    "throttling": (("status", 400), (botocore.exceptions.ClientError, "(Throttling)")),
    "reset": ("reset", (botocore.exceptions.ConnectionClosedError, "Connection was closed")),
    "stall": (("stall", 3), (botocore.exceptions.ReadTimeoutError, "Read timeout")),
    "slow": (("slow", TIMEOUT / 3), (Exception, "")),  # answers within the timeout
}


@pytest.fixture
def base(proxy: FaultProxy) -> boto3.Session:
    """The parent of every role of a test (its children share its botocore data loader)."""
    session = boto3.Session()
    arc.whoami(arc.assume_role(session, role_arn("warm-up")))  # moto's first AssumeRole is slow
    return session


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_at_each_moment(proxy: FaultProxy, base: boto3.Session, clock: time_machine.Traveller, fault: str) -> None:
    injected, error = FAULTS[fault]

    def inject() -> None:
        proxy.fault = injected

    def heal() -> None:
        proxy.fault = None

    for moment in MOMENTS.values():
        role = role_arn(f"faults-{fault}-{moment.name}")
        session = arc.assume_role(base, role, DurationSeconds=900, sts_client_kwargs={"config": STS_CONFIG})
        requests = proxy.count("AssumeRole")
        cell = run_moment(session, role, moment, clock.move_to, inject, heal)
        print(cell.row("STS", fault))
        check_cell(cell, MATRIX[fault, moment.name], error, role, 2 * TIMEOUT)
        # one AssumeRole request per fetch: the first, those of the moment, the recovery
        assert proxy.count("AssumeRole") - requests == 1 + len(cell.attempts) + len(cell.recovered)


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
