"""The asyncio shell: one fetch per lifetime, single flight across tasks, loops and threads,
cancellation, and a loop that never stalls while a refresh runs.

Against the in-process moto server (aiobotocore talks HTTP to it) with the
frozen ``clock``; every count of AssumeRole calls is moto's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import aioboto3
import botocore.exceptions
import pytest

import assume_role_chain as arc
import assume_role_chain_aio as aio
from tests.aio.conftest import ROLE
from tests.conftest import Clock
from tests.faults import FaultProxy, at

# 900 s credentials: advisory window from 675 s, mandatory from 750 s, margin from 840 s.
ADVISORY_MOMENT = 700
MANDATORY_MOMENT = 800
TASKS = 1000


async def keys(session: Any) -> str:
    return str((await aio.get_credentials(session))["access_key"])


async def keys_of_many_tasks(session: Any, tasks: int) -> set[str]:
    return set(await asyncio.gather(*(keys(session) for _ in range(tasks))))


async def until_refreshed(session: Any, old: str) -> str:
    """The keys once the background refresh is over (a generous bound, not a speed check)."""
    for _ in range(2000):
        current = await keys(session)
        if current != old:
            return current
        await asyncio.sleep(0.01)
    raise AssertionError("the background refresh never completed")


def test_1000_tasks_at_the_mandatory_moment_wait_for_one_assume_role(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)

    async def scenario() -> None:
        cold = await keys_of_many_tasks(session, TASKS)  # no credentials yet: everyone waits for one fetch
        assert len(cold) == 1 and sts_calls() == 1
        clock.move_to(at(MANDATORY_MOMENT))
        refreshed = await keys_of_many_tasks(session, TASKS)
        assert len(refreshed) == 1 and refreshed != cold, "every task waited and got the new keys"
        assert sts_calls() == 2

    asyncio.run(scenario())


def test_1000_tasks_in_the_advisory_window_never_wait_and_cause_one_assume_role(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)

    async def scenario() -> None:
        first = await keys(session)
        clock.move_to(at(ADVISORY_MOMENT))
        served = await keys_of_many_tasks(session, TASKS)
        assert served == {first}, "no task waited: all were served the current keys"
        new = await until_refreshed(session, first)
        assert new != first
        assert sts_calls() == 2

    asyncio.run(scenario())


def test_200_calls_over_a_900_s_lifetime_make_one_assume_role(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    usable_for = 900 - arc.refresh_windows(900).advisory

    async def scenario() -> None:
        async with session.client("sts") as sts:
            for step in range(200):
                clock.move_to(at(step * usable_for / 200))
                identity = await sts.get_caller_identity()
                assert identity["Arn"].endswith(f"/{ROLE.split('/')[-1]}/" + identity["Arn"].split("/")[-1])

    asyncio.run(scenario())
    assert sts_calls() == 1


def test_one_session_serves_two_event_loops_in_turn(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    first = asyncio.run(keys(session))
    clock.move_to(at(MANDATORY_MOMENT))
    second = asyncio.run(keys(session))  # a new loop, and a refresh on it
    clock.move_to(at(MANDATORY_MOMENT + 50))
    assert asyncio.run(keys(session)) == second
    assert first != second and sts_calls() == 2


def test_a_background_refresh_cut_short_by_its_loop_ending_is_made_again(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    first = asyncio.run(keys(session))
    clock.move_to(at(ADVISORY_MOMENT))
    assert asyncio.run(keys(session)) == first  # starts a background refresh; asyncio.run cancels it at exit
    clock.move_to(at(MANDATORY_MOMENT))
    second = asyncio.run(keys(session))  # another loop: no refresh of a dead loop is waited for
    assert second != first
    assert sts_calls() in (2, 3)  # the cut refresh may or may not have reached moto


def test_two_threads_with_their_own_loops_share_one_refresh(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    asyncio.run(keys(session))
    clock.move_to(at(MANDATORY_MOMENT))
    start = threading.Barrier(2)
    seen: list[set[str]] = []

    def worker() -> None:
        start.wait()
        seen.append(asyncio.run(keys_of_many_tasks(session, 200)))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 1
    assert sts_calls() == 2


class GatedFetch:
    """A coroutine credential source that holds each fetch until released."""

    def __init__(self, clock_start: Any) -> None:
        self.calls = 0
        self.started: asyncio.Event | None = None
        self.release: asyncio.Event | None = None

    async def __call__(self) -> dict[str, Any]:
        assert self.started is not None and self.release is not None
        self.calls += 1
        self.started.set()
        await self.release.wait()
        now = arc._utc_now()
        return {
            "AccessKeyId": f"ASIAGATED{self.calls:011d}",
            "SecretAccessKey": "gated-secret-value-not-printed",
            "SessionToken": "gated-session-token-not-printed",
            "Expiration": now + arc.dt.timedelta(seconds=900),
        }


def test_a_cancelled_waiter_cancels_neither_the_refresh_nor_the_others_and_holds_no_lock(clock: Clock) -> None:
    fetch = GatedFetch(None)
    session = aio.refreshable_session(fetch)

    async def scenario() -> None:
        fetch.started, fetch.release = asyncio.Event(), asyncio.Event()
        cancelled = asyncio.create_task(keys(session))
        await fetch.started.wait()
        other = asyncio.create_task(keys(session))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        fetch.release.set()
        assert await other == "ASIAGATED00000000001"
        assert fetch.calls == 1, "the refresh went on once, for the waiter that stayed"

        clock.move_to(at(MANDATORY_MOMENT))  # the next refresh: nothing is left locked
        fetch.started.clear()
        only = asyncio.create_task(keys(session))
        await fetch.started.wait()
        only.cancel()  # the only waiter goes away: the refresh still completes
        with pytest.raises(asyncio.CancelledError):
            await only
        assert fetch.calls == 2
        assert await keys(session) == "ASIAGATED00000000002"
        assert fetch.calls == 2

    asyncio.run(scenario())


class SlowStore(MutableMapping[str, Any]):
    """A dict-like cache whose every operation blocks its thread for 0.3 s."""

    DELAY = 0.3

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.operations = 0

    def _slow(self) -> None:
        self.operations += 1
        time.sleep(self.DELAY)

    def __getitem__(self, key: str) -> Any:
        self._slow()
        return self.entries[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._slow()
        self.entries[key] = value

    def __delitem__(self, key: str) -> None:
        del self.entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


async def max_loop_lag_during(work: Any) -> tuple[float, int, Any]:
    """Run ``work`` while a probe task measures the longest delay of a 5 ms sleep beyond 5 ms."""
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.02)
    try:
        result = await work
    finally:
        done.set()
        await prober
    return max(lags), len(lags), result


# The store blocks for 0.3 s per operation, three times per refresh (read, read
# under the lock, write): on the loop that would be a 0.3 s stall at least. The
# bound is generous for a loaded machine, and far below one store operation.
STALL_BOUND = 0.15


def test_a_slow_store_and_a_slow_mfa_command_never_stall_the_loop(
    aio_parent: aioboto3.Session, clock: Clock, sts_calls: Callable[[], int]
) -> None:
    store = SlowStore()

    def slow_mfa_code() -> str:
        time.sleep(SlowStore.DELAY)
        return "123456"

    session = aio.assume_role(
        aio_parent, ROLE, DurationSeconds=900, cache=store,
        SerialNumber="arn:aws:iam::123456789012:mfa/user", mfa_token_provider=slow_mfa_code,
    )

    async def scenario() -> None:
        await keys(session)  # warm: botocore's models are loaded once per process
        operations = store.operations
        clock.move_to(at(MANDATORY_MOMENT))
        lag, ticks, _ = await max_loop_lag_during(keys(session))
        assert store.operations - operations >= 3, "the refresh went through the slow store"
        assert ticks >= 20, "the probe ran while the refresh was in flight"
        assert lag < STALL_BOUND, f"the loop stalled for {lag:.3f} s"

    asyncio.run(scenario())
    assert sts_calls() == 2


def test_a_slow_plain_fetch_runs_in_a_worker_thread(clock: Clock) -> None:
    def slow_fetch() -> dict[str, Any]:
        time.sleep(SlowStore.DELAY)
        return {
            "AccessKeyId": "ASIAPLAINFETCH000001",
            "SecretAccessKey": "plain-secret-value-not-printed",
            "SessionToken": "plain-session-token-not-printed",
            "Expiration": arc._utc_now() + arc.dt.timedelta(seconds=900),
        }

    session = aio.refreshable_session(slow_fetch)

    async def scenario() -> None:
        lag, ticks, access_key = await max_loop_lag_during(keys(session))
        assert access_key == "ASIAPLAINFETCH000001"
        assert ticks >= 20 and lag < STALL_BOUND

    asyncio.run(scenario())


def test_a_failing_sts_serves_the_current_keys_and_backs_off_as_sync_does(
    aio_parent: aioboto3.Session, clock: Clock, proxy: FaultProxy
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)

    async def scenario() -> None:
        first = await keys(session)
        proxy.fault = ("status", 503)
        clock.move_to(at(MANDATORY_MOMENT))
        attempts = proxy.count("AssumeRole")
        assert await keys_of_many_tasks(session, TASKS) == {first}, "static stability: usable keys are served"
        assert proxy.count("AssumeRole") - attempts == 1, "one attempt for 1,000 tasks, then a backoff"
        assert await keys(session) == first and proxy.count("AssumeRole") - attempts == 1
        clock.shift(31)  # past the longest backoff: the next use tries again, and succeeds
        proxy.fault = None
        assert await keys(session) != first
        clock.move_to(at(880))  # the old keys were usable until 840 s: the new ones are in use
        assert proxy.count("AssumeRole") - attempts == 2

    asyncio.run(scenario())


def test_no_usable_keys_and_a_failing_sts_raise_the_error_for_every_task_once(
    aio_parent: aioboto3.Session, clock: Clock, proxy: FaultProxy
) -> None:
    session = aio.assume_role(aio_parent, ROLE, DurationSeconds=900)
    proxy.fault = ("status", 403)

    async def scenario() -> None:
        results = await asyncio.gather(*(keys(session) for _ in range(100)), return_exceptions=True)
        assert all(isinstance(result, botocore.exceptions.ClientError) for result in results)
        assert proxy.count("AssumeRole") == 1, "one attempt; the waiters and the backoff raise its error"

    asyncio.run(scenario())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_does_not_wait_for_a_refresh_running_in_its_parent(clock: Clock) -> None:
    parent_pid = os.getpid()
    in_fetch, release = threading.Event(), threading.Event()

    def fetch() -> dict[str, Any]:
        if os.getpid() == parent_pid:  # the parent's refresh stays in flight across the fork
            in_fetch.set()
            release.wait(30)
        return {
            "AccessKeyId": f"ASIAFORKED{os.getpid():010d}",
            "SecretAccessKey": "forked-secret-value-not-printed",
            "SessionToken": "forked-session-token-not-printed",
            "Expiration": arc._utc_now() + arc.dt.timedelta(seconds=900),
        }

    session = aio.refreshable_session(fetch)

    async def fork_during_refresh() -> tuple[int, str]:
        waiting = asyncio.create_task(keys(session))
        await asyncio.to_thread(in_fetch.wait, 30)
        pid = os.fork()
        if pid == 0:  # the child: a new loop, and a refresh of its own
            signal.alarm(20)
            os._exit(0 if asyncio.run(keys(session)) == f"ASIAFORKED{os.getpid():010d}" else 1)
        release.set()
        return pid, await waiting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        child, parent_keys = asyncio.run(fork_during_refresh())
    assert parent_keys == f"ASIAFORKED{parent_pid:010d}"
    assert os.waitpid(child, 0)[1] == 0, "the child got credentials of its own without waiting"
