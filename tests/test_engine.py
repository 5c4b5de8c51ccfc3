"""The refresh engine: one fetch per lifetime, single flight, static stability, forks, refresh windows, eager refresh.

Time is moved with time-machine; moto runs in-process so its clock moves too.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import itertools
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.session
import pytest
import time_machine
from moto.sts.models import sts_backends

import assume_role_chain as arc
from tests.conftest import Clock, role_arn
from tests.faults import START, FaultProxy, at


def issued_expiries() -> dict[str, dt.datetime]:
    """Access key id -> expiry of every credential moto has issued."""
    expiries = {}
    for by_partition in sts_backends.values():
        for backend in by_partition.values():
            for role in backend.assumed_roles:
                expiries[role.access_key_id] = role.expiration.replace(tzinfo=dt.timezone.utc)
    return expiries


# -- one fetch per lifetime -------------------------------------------------------


@pytest.mark.parametrize("duration", [900, 1800, 3600, 43200])
def test_one_assume_role_per_lifetime(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int], duration: int) -> None:
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=duration)
    sts = session.client("sts")
    usable_for = duration - arc.refresh_windows(duration).advisory
    for cycle, calls in enumerate((200, 50, 50)):
        for step in range(calls):
            clock.move_to(at(cycle * usable_for + step * usable_for / calls))
            sts.get_caller_identity()
        assert sts_calls() == cycle + 1, f"after {calls} more API calls, {cycle + 1} lifetimes"


def test_windows_scale_with_the_lifetime() -> None:
    assert arc.refresh_windows(43200) == arc.RefreshWindows(900, 600, 60)
    assert arc.refresh_windows(3600) == arc.RefreshWindows(900, 600, 60)
    assert arc.refresh_windows(900) == arc.RefreshWindows(225, 150, 60)
    assert arc.refresh_windows(60) == arc.RefreshWindows(15, 10, 6)
    for lifetime in (60, 300, 900, 1800, 3600, 43200):
        windows = arc.refresh_windows(lifetime)
        assert lifetime > windows.advisory > windows.mandatory > windows.margin > 0
        if lifetime >= 900:
            assert windows.margin >= 60


def test_never_signs_with_credentials_inside_the_margin(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int]) -> None:
    chain = arc.assume_role_chain(parent, [role_arn("A"), {"RoleArn": role_arn("B"), "DurationSeconds": 900}])
    signed: list[tuple[str, dt.datetime]] = []

    def record(request_signer: Any, **_: Any) -> None:
        # The same call the signer makes next: the generation it will sign with.
        signed.append((request_signer._credentials.get_frozen_credentials().access_key, dt.datetime.now(dt.timezone.utc)))

    s3 = chain.client("s3")
    s3.meta.events.register("before-sign.s3", record)
    for second in range(0, 4 * 3600, 50):
        clock.move_to(at(second))
        s3.list_buckets()
    expiries = issued_expiries()
    assert len(signed) == 4 * 3600 // 50
    assert len({key for key, _ in signed}) >= 4 * 3600 // 675  # many generations were used
    for key, moment in signed:
        assert moment < expiries[key] - dt.timedelta(seconds=60), f"signed at {moment} with {key} expiring {expiries[key]}"


# -- single flight in a process ------------------------------------------------------


class GatedSTS:
    """Holds every AssumeRole request sent through ``session`` until released."""

    def __init__(self, session: boto3.Session, armed: bool = True) -> None:
        self.armed = armed
        self.started = threading.Event()
        self.release = threading.Event()
        self.pid = os.getpid()
        session._session.register("before-send.sts.AssumeRole", self._gate)

    def _gate(self, **_: Any) -> None:
        if self.armed and os.getpid() == self.pid:  # a forked child must not wait for the parent's gate
            self.started.set()
            assert self.release.wait(30), "test never released the gate"


def run_threads(count: int, work: Callable[[], Any]) -> tuple[list[threading.Thread], list[BaseException], list[int]]:
    errors: list[BaseException] = []
    finished: list[int] = []
    barrier = threading.Barrier(count)

    def body(index: int) -> None:
        barrier.wait()
        try:
            work()
            finished.append(index)
        except BaseException as error:  # recorded and asserted on by the test
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, errors, finished


@pytest.mark.parametrize(("moment", "others_wait"), [(700, False), (800, True)], ids=["advisory", "mandatory"])
def test_64_threads_at_refresh_make_one_fetch(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int], moment: int, others_wait: bool) -> None:
    gate = GatedSTS(parent, armed=False)
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900, eager=True)
    s3 = session.client("s3")
    gate.armed = True
    clock.move_to(at(moment))
    threads, errors, finished = run_threads(64, s3.list_buckets)
    assert gate.started.wait(10)
    if others_wait:
        time.sleep(0.3)  # give waiting threads the chance to (wrongly) finish
        assert finished == [], "in the mandatory window every thread waits for the refresh"
    else:
        deadline = time.monotonic() + 20
        while len(finished) < 63 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(finished) == 63, "in the advisory window the other threads do not wait"
    gate.release.set()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(finished) == 64
    assert sts_calls() == 2  # the eager fetch and the one refresh


def test_64_threads_on_first_use_make_one_fetch(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    session = arc.assume_role_chain(parent, [role_arn("A"), role_arn("B"), role_arn("C")])
    s3 = session.client("s3")
    threads, errors, finished = run_threads(64, s3.list_buckets)
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(finished) == 64
    assert sts_calls() == 3


# -- single flight across processes ----------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time, boto3
    import assume_role_chain as arc
    start_at = float(sys.argv[2])
    session = arc.assume_role(boto3.Session(), sys.argv[3], cache=arc.JSONFileCache(sys.argv[1]))
    while time.time() < start_at:
        time.sleep(0.001)
    print(arc.whoami(session)["Arn"])
    """
)


def test_eight_processes_cold_starting_on_one_cache_make_one_call(aws_env: str, tmp_path: Path, sts_calls: Callable[[], int]) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start_at = str(time.time() + 2.0)  # all start their first call together
    workers = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), start_at, role_arn("Shared")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    results = [worker.communicate(timeout=90) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 8, [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
    assert sts_calls() == 1


def test_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    cache = arc.JSONFileCache(tmp_path, lock_timeout=20)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, assume_role_chain as arc
        with arc.JSONFileCache({str(tmp_path)!r}).lock("entry"):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    with cache.lock("entry") as acquired:
        assert acquired


def test_lock_wait_is_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    holder = arc.JSONFileCache(tmp_path)
    waiter = arc.JSONFileCache(tmp_path, lock_timeout=0.2)
    with holder.lock("entry") as held, waiter.lock("entry") as acquired:
        assert held and not acquired
    assert "not acquired" in caplog.text


# -- static stability ------------------------------------------------------------------


@pytest.mark.parametrize("fault", [("status", 503), ("status", 400), ("status", 500), "reset"], ids=["503", "throttling", "500", "reset"])
def test_failing_sts_in_the_refresh_windows_fails_no_api_call(proxy: FaultProxy, clock: time_machine.Traveller, fault: Any, caplog: pytest.LogCaptureFixture) -> None:
    session = arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=900, eager=True)
    s3 = session.client("s3")
    first_key = session.get_credentials().get_frozen_credentials().access_key  # type: ignore[union-attr]
    proxy.fault = fault
    # 700 s: advisory window; 760 s: mandatory window; until 839 s: outside the 60 s margin.
    for second in range(700, 840):
        clock.move_to(at(second))
        s3.list_buckets()  # never fails while the current credentials are valid
    attempts = proxy.count("AssumeRole") - 1
    assert 3 <= attempts <= 15, f"{attempts} attempts in 140 s: spaced by backoff, not one per call"
    assert "still serving the current ones" in caplog.text
    # Inside the safety margin: a clear error, the old credentials are not used.
    clock.move_to(at(845))
    with pytest.raises((botocore.exceptions.ClientError, botocore.exceptions.HTTPClientError)) as raised:
        s3.list_buckets()
    assert "AssumeRole" in str(raised.value) or "Connection was closed" in str(raised.value)
    if sys.version_info >= (3, 11):
        assert any(role_arn("A") in note and "no usable credentials" in note for note in raised.value.__notes__)
    # Recovery when STS comes back.
    proxy.fault = None
    clock.move_to(at(900 + 31))
    s3.list_buckets()
    assert session.get_credentials().get_frozen_credentials().access_key != first_key  # type: ignore[union-attr]


def test_stalled_sts_is_bounded_by_the_client_timeout(proxy: FaultProxy, clock: time_machine.Traveller) -> None:
    from botocore.config import Config

    session = arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=900, eager=True,
                              sts_client_kwargs={"config": Config(read_timeout=1.0, connect_timeout=1.0, retries={"total_max_attempts": 1})})
    s3 = session.client("s3")
    proxy.fault = ("stall", 5)
    clock.move_to(at(700))
    s3.list_buckets()  # the advisory refresh times out; the call still succeeds
    assert proxy.faulted == 1
    proxy.fault = None
    clock.move_to(at(705))
    s3.list_buckets()
    assert proxy.count("AssumeRole") == 3


def test_after_expiry_errors_are_raised_without_hammering_sts(proxy: FaultProxy, clock: time_machine.Traveller) -> None:
    session = arc.assume_role(boto3.Session(), role_arn("A"), DurationSeconds=900)
    s3 = session.client("s3")
    proxy.fault = ("status", 503)
    for _ in range(50):
        with pytest.raises(botocore.exceptions.ClientError, match="ServiceUnavailable"):
            s3.list_buckets()
    assert proxy.count("AssumeRole") == 1, "calls inside the backoff interval re-raise the last error"
    clock.move_to(at(1.5))
    with pytest.raises(botocore.exceptions.ClientError):
        s3.list_buckets()
    assert proxy.count("AssumeRole") == 2
    proxy.fault = None
    clock.move_to(at(10))
    s3.list_buckets()


def test_never_serves_expired_credentials(aws_env: str, clock: time_machine.Traveller) -> None:
    generation = iter(range(1000))

    def fetch() -> dict[str, Any]:
        number = next(generation)
        if number > 0:
            raise ConnectionError("credential broker unreachable")
        return {"AccessKeyId": "AKIA0", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": at(900)}

    credentials = arc.refreshable_session(fetch).get_credentials()
    assert credentials is not None
    assert credentials.get_frozen_credentials().access_key == "AKIA0"
    clock.move_to(at(839))
    assert credentials.get_frozen_credentials().access_key == "AKIA0"
    for second in (841, 899, 901, 5000):
        clock.move_to(at(second))
        with pytest.raises(ConnectionError):
            credentials.get_frozen_credentials()


# -- fork safety -----------------------------------------------------------------------


def wait_for_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child still running after {timeout} s: deadlocked")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_fork_while_another_thread_refreshes(parent: boto3.Session) -> None:
    session = arc.assume_role(parent, role_arn("A"))
    s3 = session.client("s3")
    gate = GatedSTS(parent)
    refresher = threading.Thread(target=s3.list_buckets)
    refresher.start()
    assert gate.started.wait(10)  # the refresher holds the engine's lock now
    pid = os.fork()
    if pid == 0:  # child: must fetch on its own and finish
        code = 1
        try:
            s3.list_buckets()
            session.client("sts").get_caller_identity()
            code = 0
        finally:
            os._exit(code)
    gate.release.set()
    refresher.join(30)
    assert wait_for_child(pid, 30) == 0


def _identity_in_worker(_: int) -> str:
    return str(arc.whoami(_pool_session)["Arn"])


_pool_session: boto3.Session


def test_sessions_made_before_a_process_pool_work_in_workers(parent: boto3.Session) -> None:
    import multiprocessing

    global _pool_session
    _pool_session = arc.assume_role(parent, role_arn("A"), RoleSessionName="pooled")
    arc.whoami(_pool_session)
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        arns = list(pool.map(_identity_in_worker, range(8), timeout=60))
    assert arns == ["arn:aws:sts::123456789012:assumed-role/A/pooled"] * 8


class Gate:
    """Holds the first thread of this process that passes it, until released.

    A forked child passes freely: the parent's threads and events are not its own.
    """

    def __init__(self) -> None:
        self.armed = True
        self.started = threading.Event()
        self.release = threading.Event()
        self.pid = os.getpid()

    def hold(self) -> None:
        if self.armed and os.getpid() == self.pid:
            self.armed = False
            self.started.set()
            assert self.release.wait(30), "test never released the gate"


def fork_running(work: Callable[[], Any]) -> int:
    """Fork a child that does ``work`` and exits 0 (1 if it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


class GatedLoader(botocore.loaders.Loader):
    """botocore's data loader, holding the thread that wraps a new boto3.Session around it."""

    gate: Gate | None = None

    @property
    def search_paths(self) -> list[str]:
        if self.gate is not None and sys._getframe(1).f_code.co_name == "_setup_loader":  # boto3.Session()
            self.gate.hold()
        return super().search_paths  # type: ignore[no-any-return]


LOCKER = textwrap.dedent(
    """
    import sys, assume_role_chain as arc
    with arc.JSONFileCache(sys.argv[1], lock_timeout=5).lock("entry") as acquired:
        print("acquired" if acquired else "not acquired")
    """
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_a_child_forked_during_a_refresh_does_not_hold_the_entry_lock(aws_env: str, tmp_path: Path) -> None:
    gate = Gate()

    def fetch() -> dict[str, Any]:
        gate.hold()  # the refresh holds the entry's file lock while it fetches
        return {"AccessKeyId": "AKIAFORKED", "SecretAccessKey": "s", "SessionToken": "t",
                "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}

    cache_dir = tmp_path / "cache"
    session = arc.refreshable_session(fetch, cache=arc.JSONFileCache(cache_dir), cache_key="entry")
    refresher = threading.Thread(target=arc.get_credentials, args=(session,))
    refresher.start()
    assert gate.started.wait(10)
    stop_reading, stop_writing = os.pipe()

    def live_until_told() -> None:
        os.close(stop_writing)
        select.select([stop_reading], [], [], 60)  # the parent closing its end says stop

    pid = fork_running(live_until_told)
    os.close(stop_reading)
    try:
        gate.release.set()
        refresher.join(30)
        # A third process, while the child lives on: the lock is free.
        third = subprocess.run([sys.executable, "-c", LOCKER, str(cache_dir)],
                               capture_output=True, text=True, timeout=60, check=False)
        assert third.stdout.strip() == "acquired", third.stdout + third.stderr
    finally:
        os.close(stop_writing)
        assert wait_for_child(pid, 30) == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_a_child_forked_while_a_session_is_built_builds_sessions(aws_env: str) -> None:
    core = botocore.session.Session()
    loader = GatedLoader()
    core.register_component("data_loader", loader)
    parent = boto3.Session(botocore_session=core)
    loader.gate = gate = Gate()
    builder = threading.Thread(target=arc.assume_role, args=(parent, role_arn("A")))
    builder.start()
    assert gate.started.wait(10)  # the builder holds the module's loader lock now
    pid = fork_running(lambda: arc.whoami(arc.assume_role(boto3.Session(), role_arn("B"))))
    gate.release.set()
    builder.join(30)
    assert wait_for_child(pid, 30) == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads running
def test_a_child_forked_while_a_client_is_cached_caches_clients(parent: boto3.Session) -> None:
    session = arc.assume_role(parent, role_arn("A"))
    gate = Gate()
    session.events.register("creating-client-class.sts", lambda **_: gate.hold())
    creator = threading.Thread(target=arc.cached_client, args=(session, "sts"))
    creator.start()
    assert gate.started.wait(10)  # the creator holds the session's client cache lock now
    pid = fork_running(lambda: arc.cached_client(session, "sts").get_caller_identity())
    gate.release.set()
    creator.join(30)
    assert wait_for_child(pid, 30) == 0


# -- time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expiration",
    [
        at(3600),
        at(3600).replace(tzinfo=None),
        at(3600).astimezone(dt.timezone(dt.timedelta(hours=-5))),
        "2026-11-21T13:00:00Z",
        "2026-11-21T13:00:00",
        "2026-11-21T14:00:00+01:00",
        "2026-11-21T13:00:00UTC",
        at(3600).timestamp(),
        int(at(3600).timestamp()),
    ],
    ids=["aware", "naive", "offset", "iso-z", "iso-naive", "iso-offset", "botocore-utc", "epoch-float", "epoch-int"],
)
def test_every_expiry_is_normalised_to_aware_utc(aws_env: str, clock: time_machine.Traveller, expiration: Any) -> None:
    def fetch() -> dict[str, Any]:
        return {"AccessKeyId": "AKIA1", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": expiration}

    credentials = arc.refreshable_session(fetch, eager=True).get_credentials()
    expiry = credentials._expiry_time  # type: ignore[union-attr]
    assert expiry == at(3600) and expiry.utcoffset() == dt.timedelta(0)


def test_injected_clock(aws_env: str) -> None:
    now = [at(0)]
    calls = []

    def fetch() -> dict[str, Any]:
        calls.append(now[0])
        return {"AccessKeyId": f"AKIA{len(calls)}", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": now[0] + dt.timedelta(seconds=900)}

    credentials = arc.refreshable_session(fetch, clock=lambda: now[0]).get_credentials()
    assert credentials is not None
    credentials.get_frozen_credentials()
    now[0] = at(674)
    credentials.get_frozen_credentials()
    assert len(calls) == 1
    now[0] = at(676)
    assert credentials.get_frozen_credentials().access_key == "AKIA2"


def test_a_wall_clock_stepped_back_does_not_stretch_the_backoff(aws_env: str, clock: Clock) -> None:
    attempts: list[dt.datetime] = []

    def fetch() -> dict[str, Any]:
        attempts.append(dt.datetime.now(dt.timezone.utc))
        if len(attempts) == 1:
            raise ConnectionError("credential broker unreachable")
        return {"AccessKeyId": "AKIASTEPPED", "SecretAccessKey": "s", "SessionToken": "t",
                "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}

    session = arc.refreshable_session(fetch)
    with pytest.raises(ConnectionError):
        arc.get_credentials(session)  # fails once: the next attempt in 0.5 to 1 s
    clock.move_to(at(-3600))  # an NTP correction: the wall clock steps back an hour, no time passes
    with pytest.raises(ConnectionError):
        arc.get_credentials(session)  # inside the backoff still: the last error, no attempt
    assert len(attempts) == 1
    clock.shift(1)  # one second later
    assert arc.get_credentials(session)["access_key"] == "AKIASTEPPED"
    assert len(attempts) == 2


def mixed_reads_while_generations_change(generations: int) -> int:
    """Reads of get_credentials() by three threads while a fourth renews the credentials."""
    now = [at(0)]
    expiries: dict[str, str] = {}
    numbers = itertools.count()

    def fetch() -> dict[str, Any]:
        key, expiry = f"AKIAGENERATION{next(numbers):06d}", now[0] + dt.timedelta(seconds=900)
        expiries[key] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"AccessKeyId": key, "SecretAccessKey": "s", "SessionToken": "t", "Expiration": expiry}

    session = arc.refreshable_session(fetch, clock=lambda: now[0])
    credentials = session.get_credentials()
    assert credentials is not None
    done = threading.Event()
    mixed: list[tuple[str, str | None]] = []

    def renew() -> None:  # each read lands in the advisory window (or past it): a new generation
        while not done.is_set():
            now[0] += dt.timedelta(seconds=700)
            credentials.get_frozen_credentials()

    def read() -> None:
        deadline = time.monotonic() + 30
        while len(expiries) < generations and time.monotonic() < deadline:
            seen = arc.get_credentials(session)
            if expiries[str(seen["access_key"])] != seen["expiry_time"]:
                mixed.append((str(seen["access_key"]), seen["expiry_time"]))

    renewer, readers = threading.Thread(target=renew), [threading.Thread(target=read) for _ in range(3)]
    for thread in (renewer, *readers):
        thread.start()
    for reader in readers:
        reader.join(60)
    done.set()
    renewer.join(10)
    assert len(expiries) >= generations, "generations changed while the readers read"
    return len(mixed)


def test_get_credentials_returns_one_generation(aws_env: str) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for _ in range(8):  # a race: several rounds, so that a mix would show
            mixed = mixed_reads_while_generations_change(300)
            assert mixed == 0, f"{mixed} reads mixed the keys of one generation with the expiry of another"
    finally:
        sys.setswitchinterval(interval)


# -- observability -----------------------------------------------------------------------


def test_refresh_events_and_logs_name_the_role_and_never_a_secret(parent: boto3.Session, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    events: list[arc.RefreshEvent] = []
    arc.add_refresh_listener(events.append)
    try:
        with caplog.at_level(logging.DEBUG, logger="assume_role_chain"):
            session = arc.assume_role(parent, role_arn("A"), cache=arc.JSONFileCache(tmp_path))
            frozen = session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
            arc.assume_role(parent, role_arn("A"), cache=arc.JSONFileCache(tmp_path), eager=True)
    finally:
        arc.remove_refresh_listener(events.append)
    assert [event.outcome for event in events] == ["fetched", "cache-hit"]
    assert events[0].source == role_arn("A") and events[0].expiry is not None and events[0].duration >= 0
    text = caplog.text + repr(session.get_credentials()) + repr(events)
    assert role_arn("A") in caplog.text and "expire" in caplog.text and "cache miss" in caplog.text and "cache hit" in caplog.text
    assert frozen.secret_key not in text and frozen.token not in text
    assert "parent-secret-never-printed" not in text


def test_a_listener_may_read_the_session_it_hears_about(aws_env: str, clock: Clock) -> None:
    failing = [True]

    def fetch() -> dict[str, Any]:
        if failing[0]:
            raise ConnectionError("credential broker unreachable")
        return {"AccessKeyId": "AKIALISTENED", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": at(3600)}

    session = arc.refreshable_session(fetch, source_name="listened")
    heard: list[tuple[str, str]] = []

    def listener(event: arc.RefreshEvent) -> None:
        if event.source == "listened":
            try:
                heard.append((event.outcome, str(arc.get_credentials(session)["access_key"])))
            except ConnectionError as error:
                heard.append((event.outcome, str(error)))

    def use() -> None:
        with contextlib.suppress(ConnectionError):
            arc.get_credentials(session)

    arc.add_refresh_listener(listener)
    try:
        for _ in range(2):  # a failure, then a fetch
            caller = threading.Thread(target=use, daemon=True)
            caller.start()
            caller.join(10)
            assert not caller.is_alive(), "the caller deadlocked: the listener ran under the engine's lock"
            failing[0] = False
            clock.shift(2)  # past the backoff
    finally:
        arc.remove_refresh_listener(listener)
    assert heard == [("failed", "credential broker unreachable"), ("fetched", "AKIALISTENED")]


def test_a_failing_listener_does_not_break_refresh(parent: boto3.Session, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: arc.RefreshEvent) -> None:
        raise RuntimeError("listener bug")

    arc.add_refresh_listener(broken)
    try:
        assert arc.whoami(arc.assume_role(parent, role_arn("A")))["Arn"]
    finally:
        arc.remove_refresh_listener(broken)
    assert "listener" in caplog.text


# -- refresh windows set by hand ------------------------------------------------------------


def refresh_moment(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int], **kwargs: Any) -> int:
    """The first half-minute mark at which the session refreshes its 3600 s credentials."""
    s3 = arc.assume_role(parent, role_arn("A"), DurationSeconds=3600, eager=False, **kwargs).client("s3")
    s3.list_buckets()
    before = sts_calls()
    for second in range(30, 3600, 60):
        clock.move_to(at(second))
        s3.list_buckets()
        if sts_calls() > before:
            return second
    raise AssertionError("never refreshed")


def test_windows_set_by_hand_change_when_refresh_happens(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int]) -> None:
    assert refresh_moment(parent, clock, sts_calls) == 2730  # default: 15 min before expiry
    clock.move_to(START)
    assert refresh_moment(parent, clock, sts_calls, advisory_timeout=300, mandatory_timeout=120) == 3330
    clock.move_to(START)
    assert refresh_moment(parent, clock, sts_calls, advisory_timeout=1800) == 1830


def test_windows_longer_than_the_lifetime_are_warned_about(aws_env: str) -> None:
    def fetch() -> dict[str, Any]:
        return {"AccessKeyId": "AKIA", "SecretAccessKey": "s", "SessionToken": "t", "Expiration": dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=900)}

    credentials = arc.refreshable_session(fetch, advisory_timeout=1200).get_credentials()
    assert credentials is not None
    with pytest.warns(arc.RefreshWindowWarning, match="not shorter than the credentials' lifetime"):
        credentials.get_frozen_credentials()


# -- eager, proactive refresh -------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("option", [{"eager": True}, {"defer_refresh": False}])
def test_eager_sessions_refresh_in_the_background(parent: boto3.Session, clock: time_machine.Traveller, sts_calls: Callable[[], int], option: dict[str, Any]) -> None:
    session = arc.assume_role(parent, role_arn("A"), DurationSeconds=900, **option)
    assert sts_calls() == 1, "fetched at construction"
    first = arc.get_credentials(session)["access_key"]
    refreshed_by: list[str] = []

    def listener(event: arc.RefreshEvent) -> None:
        refreshed_by.append(threading.current_thread().name)

    arc.add_refresh_listener(listener)
    try:
        clock.move_to(at(680))  # advisory window; nobody makes a call
        assert wait_for(lambda: bool(refreshed_by)), "the background thread refreshed"
    finally:
        arc.remove_refresh_listener(listener)
    assert refreshed_by == ["assume-role-chain-refresh"] and sts_calls() == 2
    assert arc.get_credentials(session)["access_key"] != first
    clock.move_to(at(700))
    time.sleep(1.2)  # a poll interval: no refresh while the new credentials are fresh
    assert sts_calls() == 2


def test_eager_sessions_are_released_when_dropped(parent: boto3.Session) -> None:
    import gc
    import weakref

    session = arc.assume_role(parent, role_arn("A"), eager=True)
    credentials = weakref.ref(session.get_credentials())  # type: ignore[arg-type]
    del session
    time.sleep(1.2)  # let the background thread run a poll with the session registered
    gc.collect()
    assert credentials() is None


def test_eager_construction_fails_fast(parent: boto3.Session) -> None:
    def refuse(**_: object) -> None:
        raise botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole")

    parent._session.register("before-call.sts.AssumeRole", refuse)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        arc.assume_role(parent, role_arn("A"), defer_refresh=False)


def test_defer_refresh_true_is_lazy(parent: boto3.Session, sts_calls: Callable[[], int]) -> None:
    arc.assume_role(parent, role_arn("A"), defer_refresh=True)
    assert sts_calls() == 0


def test_background_thread_survives_a_fork(parent: boto3.Session) -> None:
    import os

    session = arc.assume_role(parent, role_arn("A"), eager=True)
    assert any(t.name == "assume-role-chain-refresh" for t in threading.enumerate())
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            arc.whoami(session)
            code = 0 if any(t.name == "assume-role-chain-refresh" for t in threading.enumerate()) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
