"""asyncio measurements, each run in a fresh process: ``python -m bench.aio_worker '<json spec>'``.

The spec is ``{"measure": NAME, "lib": KEY, ...parameters}``; the result is printed as
one JSON line. AssumeRole calls are counted server-side (bench.server). Needs aioboto3
(and aioboto3-assume for its rows): see bench/README.md, "asyncio".
"""

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import aioboto3

from bench.env import ASSUMED_ROLE_MARKER, ROLE_ARN, ROLE_SESSION_NAME
from bench.worker import _clock_moved, _ms, _rss, _server

Result = dict[str, Any]
OURS = "assume-role-chain"
PEER = "aioboto3-assume"


def session_factory(lib: str, duration: int) -> Callable[[], aioboto3.Session]:
    """A function that makes one assumed-role aioboto3 session of ``lib`` from one parent."""
    parent = aioboto3.Session()
    if lib == OURS:
        import assume_role_chain_aio

        return lambda: assume_role_chain_aio.assume_role(
            parent, ROLE_ARN, RoleSessionName=ROLE_SESSION_NAME, DurationSeconds=duration
        )
    if lib == PEER:
        import aioboto3_assume

        arguments = {"RoleArn": ROLE_ARN, "RoleSessionName": ROLE_SESSION_NAME, "DurationSeconds": duration}
        return lambda: aioboto3_assume.assume_role(source_session=parent, assume_role_kwargs=arguments)
    raise ValueError(f"unknown library {lib!r}")


async def _call_as_role(client: Any) -> None:
    arn = (await client.get_caller_identity())["Arn"]
    if ASSUMED_ROLE_MARKER not in arn:
        raise RuntimeError(f"API call was not made as the assumed role: {arn}")


async def sts_calls(lib: str, duration: int, calls: int) -> Result:
    """AssumeRole calls for ``calls`` API calls back to back on one client (initial fetch included)."""
    server = _server()
    before = server.assume_role_count()
    async with session_factory(lib, duration)().client("sts") as client:
        for _ in range(calls):
            await _call_as_role(client)
    return {"assume_role_calls": server.assume_role_count() - before}


async def tasks(lib: str, duration: int, task_count: int, clock_offset: float, rounds: int) -> Result:
    """``task_count`` tasks share one client; the clock (and the server's) is moved into the
    mandatory window and every task makes one call. Latencies of all rounds are pooled."""
    make = session_factory(lib, duration)
    server = _server()
    latencies: list[float] = []
    errors = 0
    per_round = []
    for _ in range(rounds):
        async with make().client("sts") as client:
            await _call_as_role(client)  # initial fetch, not counted
            before = server.assume_role_count()
            with _clock_moved(clock_offset):

                async def one() -> None:
                    nonlocal errors
                    start = time.perf_counter()
                    try:
                        await _call_as_role(client)
                    except Exception:  # counted and reported, not fatal
                        errors += 1
                    latencies.append(time.perf_counter() - start)

                await asyncio.gather(*(one() for _ in range(task_count)))
            per_round.append(server.assume_role_count() - before)
    percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "assume_role_calls_per_round": sum(per_round) / rounds,
        "rounds": rounds,
        "api_calls": len(latencies),
        "errors": errors,
        "p50_ms": _ms(percentiles[49]),
        "p99_ms": _ms(percentiles[98]),
    }


async def memory(lib: str, duration: int, sessions: int) -> Result:
    """Resident-memory growth for ``sessions`` live sessions with one open STS client each."""
    make = session_factory(lib, duration)
    async with make().client("sts"):  # the first client loads the models: not counted
        pass
    baseline = _rss()
    start = time.perf_counter()
    live: list[tuple[Any, Any, Any]] = []
    for _ in range(sessions):
        session = make()
        context = session.client("sts")
        live.append((session, context, await context.__aenter__()))
    elapsed = time.perf_counter() - start
    delta = _rss() - baseline
    for _session, context, _client in live:
        await context.__aexit__(None, None, None)
    return {
        "sessions": len(live),
        "rss_delta_mb": round(delta / 2**20, 1),
        "mb_per_session": round(delta / 2**20 / sessions, 3),
        "seconds": round(elapsed, 2),
    }


MEASURES = {"sts_calls": sts_calls, "tasks": tasks, "memory": memory}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    measure = MEASURES[spec.pop("measure")]
    print(json.dumps(asyncio.run(measure(**spec))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
