"""Measurements, each run in a fresh process: ``python -m bench.worker '<json spec>'``.

The spec is ``{"measure": NAME, "lib": KEY, ...parameters}``; the result is printed
as one JSON line. STS calls are counted server-side (see bench.server), read
before and after the measured phase.
"""

import contextlib
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from bench.env import ASSUMED_ROLE_MARKER
from bench.libs import STATIC, STATIC_KEY_ID, api_client, session_factory
from bench.server import ServerControl

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

Result = dict[str, Any]


def _server() -> ServerControl:
    return ServerControl(os.environ["AWS_ENDPOINT_URL"])


def _call_as_role(client: "STSClient") -> None:
    """One API call; fails loudly if it was not made with the assumed role."""
    arn = client.get_caller_identity()["Arn"]
    if ASSUMED_ROLE_MARKER not in arn:
        raise RuntimeError(f"API call was not made as the assumed role: {arn}")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def sts_calls(lib: str, duration: int, calls: int) -> Result:
    """AssumeRole calls made while ``calls`` API calls go through one session."""
    client = api_client(session_factory(lib, duration)())
    server = _server()
    before = server.assume_role_count()
    for _ in range(calls):
        _call_as_role(client)
    return {"assume_role_calls": server.assume_role_count() - before, "api_calls": calls}


def _median_ms(action: Callable[[], object], reps: int) -> float:
    action()  # warm-up: first-use costs of the library are not per session
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return _ms(statistics.median(samples))


def create_time(lib: str, duration: int, reps: int) -> Result:
    """Median time to create a session, and a session plus its first client."""
    make = session_factory(lib, duration)
    return {
        "session_ms": _median_ms(make, reps),
        "session_and_client_ms": _median_ms(lambda: api_client(make()), reps),
        "reps": reps,
    }


def _rss() -> int:
    import psutil  # type: ignore[import-untyped]

    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _build_live(make: Callable[[], object], count: int, batch: int = 25) -> list[object]:
    """``count`` live objects, built with the cyclic GC paused (automatic collections
    over the growing heap more than doubled the peers' run time). After every ``batch``
    the garbage is collected, so none is left to inflate the RSS, and the survivors are
    frozen, so that later collections do not scan them again."""
    live: list[object] = []
    gc.disable()
    try:
        while len(live) < count:
            live += [make() for _ in range(min(batch, count - len(live)))]
            gc.collect()
            gc.freeze()
    finally:
        gc.unfreeze()
        gc.enable()
    return live


def memory(lib: str, duration: int, sessions: int) -> Result:
    """Resident-memory growth for ``sessions`` live sessions with one STS client each."""
    make = session_factory(lib, duration)
    baseline = _rss()
    start = time.perf_counter()
    live = _build_live(lambda: api_client(make()), sessions)
    elapsed = time.perf_counter() - start
    delta = _rss() - baseline
    return {
        "sessions": len(live),
        "rss_delta_mb": round(delta / 2**20, 1),
        "mb_per_session": round(delta / 2**20 / sessions, 3),
        "seconds": round(elapsed, 2),
    }


@contextlib.contextmanager
def _clock_moved(seconds: float) -> Iterator[None]:
    """Move this process's clock and the server's clock ahead by ``seconds``."""
    if not seconds:
        yield
        return
    import time_machine  # imported here: it costs 0.3 s of start-up

    server = _server()
    server.set_clock_offset(seconds)
    try:
        with time_machine.travel(time.time() + seconds, tick=True):
            yield
    finally:
        server.set_clock_offset(0)


def _hammer(
    client: "STSClient", thread_count: int, calls: int, call: Callable[["STSClient"], None] = _call_as_role
) -> tuple[list[float], int]:
    """``thread_count`` threads released together, ``calls`` API calls each: latencies, errors."""
    barrier = threading.Barrier(thread_count)
    latencies: list[float] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        for _ in range(calls):
            start = time.perf_counter()
            try:
                call(client)
            except Exception as error:  # counted and reported, not fatal
                errors.append(error)
            latencies.append(time.perf_counter() - start)

    workers = [threading.Thread(target=run) for _ in range(thread_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return latencies, len(errors)


def threads(lib: str, duration: int, thread_count: int, calls: int, clock_offset: float, rounds: int) -> Result:
    """Threads share one client whose credentials were fetched at real time; the clock
    is then moved ``clock_offset`` seconds ahead and the threads are released together.

    Each round uses its own session (all fetched up front, so moving the clock by the
    same offset lands each round at the same point of its credentials' lifetime).
    Latencies of all rounds are pooled.
    """
    clients = [api_client(session_factory(lib, duration)()) for _ in range(rounds)]
    for client in clients:
        _call_as_role(client)  # initial fetch, not counted
    server = _server()
    before = server.assume_role_count()
    latencies: list[float] = []
    errors = 0
    for client in clients:
        with _clock_moved(clock_offset):
            round_latencies, round_errors = _hammer(client, thread_count, calls)
        latencies += round_latencies
        errors += round_errors
    percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "assume_role_calls_per_round": (server.assume_role_count() - before) / rounds,
        "rounds": rounds,
        "api_calls": len(latencies),
        "errors": errors,
        "p50_ms": _ms(percentiles[49]),
        "p99_ms": _ms(percentiles[98]),
    }


def _signed_by(expected: Callable[[str], bool]) -> Callable[["STSClient"], None]:
    """One call to the no-op endpoint, which answers with the signing key ID."""

    def call(client: "STSClient") -> None:
        key_id = client.get_caller_identity()["UserId"]
        if not expected(key_id):
            raise RuntimeError(f"API call signed with the wrong credentials: {key_id}")

    return call


def _noop_side(lib: str, duration: int, endpoint_url: str) -> tuple["STSClient", Callable[["STSClient"], None]]:
    """A client of ``lib`` pointed at the no-op endpoint, and a call that checks its signer."""
    client = api_client(session_factory(lib, duration)(), endpoint_url)
    if lib == STATIC:
        return client, _signed_by(lambda key_id: key_id == STATIC_KEY_ID)
    return client, _signed_by(lambda key_id: bool(key_id) and key_id != STATIC_KEY_ID)


def noop_calls(
    lib: str,
    duration: int,
    thread_count: int,
    calls: int,
    endpoint_url: str,
    warmup: int,
    blocks: int = 1,
    with_static: bool = False,
) -> Result:
    """Per-call time against the no-op endpoint: credentials come from moto (via
    ``AWS_ENDPOINT_URL``), API calls go to ``endpoint_url``. ``warmup`` calls per
    thread (the initial fetch among them) are made first and not measured.

    With ``with_static``, a plain session with static keys is measured in the same
    process, in alternating blocks (ABBA order), so that both see the same machine
    load. Returns ``{side: {...}}`` with ``lib`` (and ``STATIC``) as sides.
    """
    sides = {lib: _noop_side(lib, duration, endpoint_url)}
    if with_static:
        sides[STATIC] = _noop_side(STATIC, duration, endpoint_url)
    for client, call in sides.values():
        if _hammer(client, thread_count, warmup, call)[1]:
            raise RuntimeError("the warm-up calls failed or were signed with the wrong credentials")
    latencies: dict[str, list[float]] = {side: [] for side in sides}
    server = _server()
    before = server.assume_role_count()
    order = list(sides)
    for block in range(blocks):
        for side in order if block % 2 == 0 else order[::-1]:
            client, call = sides[side]
            block_latencies, errors = _hammer(client, thread_count, calls // blocks, call)
            if errors:
                raise RuntimeError(f"{errors} calls failed or were signed with the wrong credentials")
            latencies[side] += block_latencies
    assume_role_calls = server.assume_role_count() - before  # static keys make none
    return {
        side: {
            "api_calls": len(values),
            "assume_role_calls": assume_role_calls if side == lib else 0,
            "p50_us": round(statistics.median(values) * 1e6, 1),
            "mean_us": round(statistics.fmean(values) * 1e6, 1),
        }
        for side, values in latencies.items()
    }


def cache_process(lib: str, duration: int, cache_dir: str) -> Result:
    """One of N processes sharing ``cache_dir``: ready, wait for "go", one API call."""
    client = api_client(session_factory(lib, duration, cache_dir)())
    print("ready", flush=True)
    sys.stdin.readline()
    _call_as_role(client)
    return {"ok": True}


def fleet_setup(lib: str, table: str) -> Result:
    """Create the DynamoDB table of the fleet rows on the moto server."""
    import assume_role_chain as arc

    arc.DynamoDBCache.create_table(table)
    return {"ok": True}


def time_to_credentials(lib: str, duration: int, cache_dir: str | None, reps: int) -> Result:
    """Median time from a new session to its credentials: a cache hit in ``cache_dir``'s
    store (an entry is written first), or with no cache an AssumeRole on moto."""
    make = session_factory(lib, duration, cache_dir)
    _call_as_role(api_client(make()))  # warms the store (and the parent's identity, remembered in-process)

    def credentials() -> object:
        return make().get_credentials().get_frozen_credentials()  # type: ignore[union-attr]

    before = _server().assume_role_count()
    median = _median_ms(credentials, reps)
    return {"ms": median, "assume_role_calls": _server().assume_role_count() - before}


MEASURES: dict[str, Callable[..., Result]] = {
    "fleet_setup": fleet_setup,
    "time_to_credentials": time_to_credentials,
    "sts_calls": sts_calls,
    "create_time": create_time,
    "memory": memory,
    "threads": threads,
    "cache_process": cache_process,
    "noop_calls": noop_calls,
}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    result = MEASURES[spec.pop("measure")](**spec)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
