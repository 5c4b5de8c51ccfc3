"""Where the time of a credential read goes, ours against static credentials.

    python -m bench.profile_reads [--threads 64] [--calls 100] [--reads 20000]

Starts the moto server (for the AssumeRole fetch) and the no-op endpoint, then,
each in a fresh process:

1. **Credential reads alone**: ``threads`` threads call
   ``credentials.get_frozen_credentials()`` (what botocore's signer calls once per
   request) ``reads`` times each; reports ns per read. For static credentials,
   ours (3600 s and 900 s) and each peer (3600 s: no refresh during the loop).
2. **cProfile of API calls** to the no-op endpoint, ``threads`` threads x
   ``calls`` calls, one profiler per thread, merged: time per call, and the
   share of the credential read path (``get_frozen_credentials`` and what it
   calls: ``_refresh``, ``_state``, the clock, locks).
"""

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import REPO_ROOT, isolated_env
from bench.libs import LIBRARIES, OURS, STATIC, api_client, session_factory
from bench.noop_server import running_noop_server
from bench.server import running_server


def _in_threads(thread_count: int, body: Callable[[], None]) -> float:
    """Run ``body`` in ``thread_count`` threads released together; wall seconds."""
    barrier = threading.Barrier(thread_count + 1)

    def run() -> None:
        barrier.wait()
        body()

    workers = [threading.Thread(target=run) for _ in range(thread_count)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def reads(lib: str, duration: int, thread_count: int, count: int, endpoint_url: str) -> dict[str, Any]:
    """ns per ``get_frozen_credentials()`` with ``thread_count`` threads reading."""
    session = session_factory(lib, duration)()
    api_client(session, endpoint_url).get_caller_identity()  # initial fetch
    credentials = session.get_credentials()  # the object the client's signer reads per request
    assert credentials is not None

    def body() -> None:
        read = credentials.get_frozen_credentials
        for _ in range(count):
            read()

    wall = _in_threads(thread_count, body)
    return {"ns_per_read": round(wall / (count * thread_count) * 1e9)}


def _label(function: tuple[str, int, str]) -> str:
    file, line, name = function
    return f"{Path(file).name}:{line}({name})" if line else name


def _read_path(stats: pstats.Stats) -> list[tuple[str, int, float, float]]:
    """(function, calls, own s, cumulative s) of ``get_frozen_credentials`` and
    everything it calls, costliest first."""
    table = stats.stats  # type: ignore[attr-defined]
    stats.calc_callees()
    callees = stats.all_callees  # type: ignore[attr-defined]
    todo = [function for function in table if function[2] == "get_frozen_credentials"]
    seen: set[tuple[str, int, str]] = set()
    while todo:
        function = todo.pop()
        if function not in seen:
            seen.add(function)
            todo += callees.get(function, {})
    rows = [(_label(f), int(table[f][1]), table[f][2], table[f][3]) for f in seen if f in table]
    return sorted(rows, key=lambda row: -row[3])


def profile(lib: str, duration: int, thread_count: int, calls: int, endpoint_url: str) -> dict[str, Any]:
    """cProfile (per-thread CPU time) of ``thread_count`` x ``calls`` API calls: the
    CPU time per call, and that of the credential read path."""
    client = api_client(session_factory(lib, duration)(), endpoint_url)
    for _ in range(5):
        client.get_caller_identity()
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def body() -> None:
        # CPU time of this thread: time spent waiting for the GIL is not counted.
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        for _ in range(calls):
            client.get_caller_identity()
        profiler.disable()
        with lock:
            profiles.append(profiler)

    wall = _in_threads(thread_count, body)
    stats = pstats.Stats(profiles[0])
    for profiler in profiles[1:]:
        stats.add(profiler)
    total = thread_count * calls
    own = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    emits = sum(
        row[1]
        for (file, _, function), row in stats.stats.items()  # type: ignore[attr-defined]
        if file.endswith("hooks.py") and function in ("emit", "emit_until_response")
    )
    return {
        "wall_us_per_call": round(wall / total * 1e6, 1),
        "cpu_us_per_call": round(own / total * 1e6, 1),
        # An event goes through one EventAliaser and one HierarchicalEmitter per
        # emitter layer: more calls per API call mean more wrapping.
        "botocore_emit_calls_per_call": round(emits / total, 1),
        "read_path": [
            {
                "function": name,
                "calls": n,
                "own_us": round(t / total * 1e6, 3),
                "cumulative_us": round(c / total * 1e6, 3),
            }
            for name, n, t, c in _read_path(stats)
        ],
    }


_CHILD: dict[str, Callable[..., dict[str, Any]]] = {"reads": reads, "profile": profile}


def _child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.profile_reads", "--child", json.dumps(spec)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_reads", description=__doc__)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--calls", type=int, default=100, help="API calls per thread, profiled")
    parser.add_argument("--reads", type=int, default=20000, help="credential reads per thread")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(_CHILD[spec.pop("kind")](**spec)), flush=True)
        return
    libraries = [STATIC, *(lib.key for lib in LIBRARIES if lib.available())]
    with tempfile.TemporaryDirectory(prefix="arc-profile-") as tmp:
        workdir = Path(tmp)
        with running_server(isolated_env(workdir)) as endpoint, running_noop_server(isolated_env(workdir)) as noop:
            env = isolated_env(workdir, endpoint)
            print(f"Credential reads: get_frozen_credentials(), {args.reads} per thread [ns per read]")
            for threads in (1, args.threads):
                for lib in libraries:
                    for duration in (3600, 900) if lib == OURS.key else (3600,):
                        spec = {
                            "kind": "reads",
                            "lib": lib,
                            "duration": duration,
                            "thread_count": threads,
                            "count": args.reads if threads == 1 else max(1, args.reads // threads * 4),
                            "endpoint_url": noop,
                        }
                        result = _child(spec, env)
                        print(f"  {threads:>3} threads  {lib:<22} {duration:>5} s  {result['ns_per_read']:>8,} ns")
            print(f"\ncProfile, {args.threads} threads x {args.calls} API calls to the no-op endpoint [µs per call]")
            for lib, duration in ((STATIC, 3600), (OURS.key, 3600), (OURS.key, 900)):
                spec = {
                    "kind": "profile",
                    "lib": lib,
                    "duration": duration,
                    "thread_count": args.threads,
                    "calls": args.calls,
                    "endpoint_url": noop,
                }
                result = _child(spec, env)
                print(
                    f"  {lib}, {duration} s: wall {result['wall_us_per_call']} µs per call, "
                    f"CPU {result['cpu_us_per_call']} µs per call (profiled); botocore hooks.py emit calls "
                    f"per API call: {result['botocore_emit_calls_per_call']}; credential read path:"
                )
                for row in result["read_path"]:
                    print(
                        f"    {row['function']:<60} calls {row['calls']:>6,}  "
                        f"own {row['own_us']:>6.3f}  cumulative {row['cumulative_us']:>6.3f}"
                    )


if __name__ == "__main__":
    main()
