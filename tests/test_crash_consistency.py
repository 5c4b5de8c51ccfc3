"""Writers killed with SIGKILL at random points never corrupt what other processes read.

Per iteration a forked writer rewrites one JSONFileCache entry in a loop (new
content and size each time, every other iteration under the entry's lock) and
is killed after a random 0-10 ms: before its first write, inside
``mkstemp``/``write``/``fsync``/``os.replace``, or between writes (one write
with fsync takes a few milliseconds). Reader processes, forked once, read the
entry all along. A corrupt read is anything but ``KeyError`` or a complete,
valid entry.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import assume_role_chain as arc

ITERATIONS = 500
READERS = 2
KEY = "crash-consistency"
ROOT = Path(__file__).resolve().parents[1]


def entry(n: int) -> dict[str, str]:
    """Entry number ``n``: its size varies (up to ~10 KiB) and every field depends on ``n``."""
    digest = hashlib.sha256(str(n).encode()).hexdigest()
    return {
        "AccessKeyId": f"ASIA{n:016d}",
        "SecretAccessKey": digest,
        "SessionToken": digest * (1 + n % 150),
        "Expiration": "2030-01-01T00:00:00Z",
    }


def is_valid(value: Any) -> bool:
    try:
        return bool(value == entry(int(value["AccessKeyId"][4:])))
    except (KeyError, TypeError, ValueError):
        return False


def fork() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        return os.fork()


def writer(folder: Path, first: int, progress: mmap.mmap, locked: bool) -> None:
    """Rewrite the entry until killed; count completed writes in ``progress``."""
    cache = arc.JSONFileCache(folder)
    n = first
    while True:
        if locked:
            with cache.lock(KEY):
                cache[KEY] = entry(n)
        else:
            cache[KEY] = entry(n)
        struct.pack_into("Q", progress, 0, struct.unpack_from("Q", progress, 0)[0] + 1)
        n += 1


def reader(folder: Path, stop: int, stop_write_end: int, report: int) -> None:
    """Read until the parent closes ``stop``'s write end, then write counts as JSON to ``report``."""
    os.close(stop_write_end)
    cache = arc.JSONFileCache(folder)
    counts = {"reads": 0, "hits": 0, "misses": 0, "corrupt": 0, "exceptions": 0}
    versions: set[str] = set()
    errors: list[str] = []
    while not select.select([stop], [], [], 0)[0]:
        time.sleep(0.0002)  # leave the writer some of the two cores CI has
        counts["reads"] += 1
        try:
            value = cache[KEY]
            listed = list(cache) if counts["reads"] % 50 == 0 else [KEY]
        except KeyError:
            counts["misses"] += 1
            continue
        except Exception as error:
            counts["exceptions"] += 1
            errors.append(repr(error)[:200])
            continue
        if is_valid(value) and listed == [KEY]:
            counts["hits"] += 1
            versions.add(value["AccessKeyId"])
        else:
            counts["corrupt"] += 1
            errors.append(f"corrupt: {str(value)[:120]} listed {listed}")
    os.write(report, json.dumps({**counts, "versions": len(versions), "errors": errors[:5]}).encode())


def run_child(target: Any, *args: Any) -> int:
    pid = fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            target(*args)
            status = 0
        finally:
            os._exit(status)
    return pid


def drive(folder: Path, iterations: int) -> dict[str, Any]:
    """The experiment, run in a lean interpreter (forking pytest itself costs ~20 ms a time)."""
    arc.JSONFileCache(folder)[KEY] = entry(0)
    stop_read, stop_write = os.pipe()
    readers = []
    for _ in range(READERS):
        report_read, report_write = os.pipe()
        readers.append((run_child(reader, folder, stop_read, stop_write, report_write), report_read))
        os.close(report_write)
    progress = mmap.mmap(-1, 8)
    rng = random.Random(7)
    started = time.monotonic()
    try:
        for iteration in range(iterations):
            pid = run_child(writer, folder, (iteration + 1) * 1_000_000, progress, iteration % 2 == 1)
            time.sleep(rng.uniform(0, 0.010))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status), f"writer {iteration} ended by itself: {status}"
    finally:
        os.close(stop_write)
    results = []
    for pid, report in readers:
        with os.fdopen(report, "rb") as pipe:
            results.append(json.loads(pipe.read() or b"{}"))
        _, status = os.waitpid(pid, 0)
        results[-1]["exit"] = os.waitstatus_to_exitcode(status)
    return {
        "elapsed": round(time.monotonic() - started, 1),
        "writes": struct.unpack_from("Q", progress, 0)[0],
        "readers": results,
    }


def test_sigkilled_writers_never_corrupt_concurrent_reads(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    script = "import json, sys; from tests.test_crash_consistency import drive; print(json.dumps(drive(sys.argv[1], int(sys.argv[2]))))"
    run = subprocess.run([sys.executable, "-c", script, str(folder), str(ITERATIONS)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    readers = result["readers"]
    stale = sorted(folder.glob(".tmp-*"))
    summary = (f"{ITERATIONS} writers SIGKILLed ({result['writes']} completed writes, {len(stale)} temporary "
               f"files left) in {result['elapsed']} s; readers: {readers}")
    print(summary)
    assert all(r["exit"] == 0 for r in readers), summary
    assert all(r["corrupt"] == 0 and r["exceptions"] == 0 for r in readers), summary
    assert sum(r["hits"] for r in readers) > 1000, summary
    assert max(r["versions"] for r in readers) > 20, "readers saw too few rewrites to mean anything: " + summary
    assert result["writes"] > 20 and stale, "writers were not killed both between and inside writes: " + summary
    assert is_valid(arc.JSONFileCache(folder)[KEY]) and list(arc.JSONFileCache(folder)) == [KEY]

    # Locks held by killed writers died with them.
    began = time.monotonic()
    with arc.JSONFileCache(folder, lock_timeout=2).lock(KEY) as acquired:
        assert acquired and time.monotonic() - began < 1

    # Temporary files of killed writers are removed later, once old enough,
    # by the first write of a cache to the folder; young ones may belong to a
    # live writer and stay.
    arc.JSONFileCache(folder)[KEY] = entry(1)
    assert all(path.exists() for path in stale), "young temporary files must stay"
    old = time.time() - 3600
    for path in stale:
        os.utime(path, (old, old))
    young = folder / ".tmp-written-just-now"
    young.write_bytes(b'{"Key": ')
    arc.JSONFileCache(folder)[KEY] = entry(2)
    assert not any(path.exists() for path in stale) and young.exists()
    assert arc.JSONFileCache(folder)[KEY] == entry(2)
