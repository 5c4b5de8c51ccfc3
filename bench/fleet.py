"""Rows "N hosts cold start": fleet stores (RedisCache, DynamoDBCache) vs a file cache per host.

Every process is its own host: no shared folder. Ours shares through a real
``redis-server`` (started here, on 127.0.0.1) or a DynamoDB table on the moto
server; aws-assume-role-lib gets its file cache in a folder of its own per
process; the other peers have no cross-process cache.
"""

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bench.libs import OURS, Library
from bench.report import Metric

if TYPE_CHECKING:
    from bench.run import Runner, Settings

TABLE = "bench-fleet"
HOSTS = (8, 64)
HIT_REPS = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """A ``redis-server`` without persistence on a free port; its URL."""
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    process = subprocess.Popen(
        [executable, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)


def _stores(redis_url: str, hosts: int) -> dict[str, str]:
    """Where ours shares, per size: a Redis database and a table of its own, so that each size starts cold."""
    return {"RedisCache": f"{redis_url}/{HOSTS.index(hosts)}", "DynamoDBCache": f"dynamodb://{TABLE}-{hosts}"}


def _notes(libraries: list[Library]) -> dict[str, str]:
    notes = {lib.key: "a file cache per host" if lib.cross_process_cache != "none" else "no cross-process cache" for lib in libraries}
    notes[OURS.key] = "+1 GetCallerIdentity per process (the parent's principal)"
    return notes


def measure_fleet(runner: "Runner", settings: "Settings", workdir: Path) -> list[Metric]:
    duration = settings.cache_duration
    metrics = []
    with running_redis() as redis_url:
        for hosts in HOSTS:
            runner.worker({"measure": "fleet_setup", "lib": OURS.key, "table": f"{TABLE}-{hosts}"})
        for hosts in HOSTS:
            print(f"{hosts} hosts cold start (one process each, no shared folder), {duration} s credentials")
            started = time.perf_counter()
            peers = {
                lib.key: runner.cache_round(lib.key, duration, hosts, workdir / f"hosts-{hosts}-{lib.key}", per_host=True)
                for lib in runner.libraries if lib.key != OURS.key
            }
            for store, where in _stores(redis_url, hosts).items():
                metrics.append(Metric(
                    key=f"fleet_cold_{hosts}_{store}",
                    label=f"{hosts} hosts cold start, ours on {store}: AssumeRole calls",
                    unit="calls",
                    values={OURS.key: runner.cache_round(OURS.key, duration, hosts, where), **peers},
                    notes=_notes(runner.libraries),
                ))
            print(f"  {hosts} hosts, every library: {time.perf_counter() - started:.1f} s", flush=True)
        print(f"time to credentials of a new session, median of {HIT_REPS}")
        for store, where in {**_stores(redis_url, HOSTS[0]), "AssumeRole": None}.items():
            result = runner.worker({"measure": "time_to_credentials", "lib": OURS.key, "duration": duration, "cache_dir": where, "reps": HIT_REPS})
            metrics.append(Metric(
                key=f"fleet_ttc_{store}",
                label=f"Time to credentials: {'a hit in ' + store if where else 'an AssumeRole on moto (no cache)'}",
                unit="ms",
                values={OURS.key: result["ms"] if result else None},
            ))
    return metrics
