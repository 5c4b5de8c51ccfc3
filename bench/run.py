"""Orchestrator: start moto, run every measurement for every library, write the report."""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import fleet, import_time, report
from bench.env import REPO_ROOT, isolated_env
from bench.libs import LIBRARIES, OURS, STATIC, Library
from bench.noop_server import running_noop_server
from bench.report import Metric
from bench.server import ServerControl, running_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    api_calls: int = 200
    durations: tuple[int, ...] = (900, 3600)
    create_reps: int = 50
    memory_sessions: int = 1000
    peer_memory_sessions: int = 200
    thread_count: int = 64
    calls_per_thread: int = 3
    thread_rounds: int = 2
    refresh_margin: int = 300  # clock moved to 5 min before expiry: every library's mandatory window
    processes: int = 8
    cache_duration: int = 3600
    noop_calls: int = 2000  # at 1 thread
    noop_thread_calls: int = 100  # per thread, at thread_count threads
    noop_warmup: int = 20  # calls per thread before measuring (initial fetch included)
    noop_blocks: int = 10  # ours and static keys alternate in this many blocks
    import_reps: int = 15


QUICK = Settings(
    api_calls=20,
    create_reps=5,
    memory_sessions=50,
    peer_memory_sessions=20,
    thread_count=8,
    thread_rounds=1,
    processes=4,
    noop_calls=200,
    noop_thread_calls=20,
    noop_warmup=5,
    noop_blocks=2,
    import_reps=3,
)

# Groups of rows, in the order of the table; ``--only`` picks some of them.
GROUPS = ("sts", "create", "memory", "threads", "cache", "fleet", "noop", "import")


class Runner:
    """Runs worker processes in the isolated environment and records failures."""

    def __init__(self, env: dict[str, str], libraries: list[Library], noop_url: str) -> None:
        self.env = env
        self.libraries = libraries
        self.noop_url = noop_url
        self.server = ServerControl(env["AWS_ENDPOINT_URL"])
        self.errors: dict[str, str] = {}

    def _command(self, spec: dict[str, Any]) -> list[str]:
        return [sys.executable, "-m", "bench.worker", json.dumps(spec)]

    def worker(self, spec: dict[str, Any]) -> dict[str, Any] | None:
        """Run one measurement process; ``None`` (and an error entry) if it fails."""
        started = time.perf_counter()
        done = subprocess.run(
            self._command(spec), env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        print(f"  {spec['measure']} {spec['lib']}: {time.perf_counter() - started:.1f} s", flush=True)
        if done.returncode != 0:
            self._fail(spec, done.stderr)
            return None
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def _fail(self, spec: dict[str, Any], stderr: str) -> None:
        label = f"{spec['measure']} {spec['lib']}"
        self.errors[label] = stderr.strip().splitlines()[-1] if stderr.strip() else "failed"
        print(f"  ! {label} failed: {self.errors[label]}", file=sys.stderr)

    def per_library(self, spec: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
        return {lib.key: self.worker({**spec, "lib": lib.key}) for lib in self.libraries}

    def cache_round(self, lib: str, duration: int, processes: int, cache_dir: Path | str, per_host: bool = False) -> int | None:
        """Start ``processes`` workers sharing ``cache_dir`` (a folder, or a fleet store's URL),
        or each with a folder of its own in it (``per_host``); release them together, count STS calls."""
        spec = {"measure": "cache_process", "lib": lib, "duration": duration, "cache_dir": str(cache_dir)}
        started = time.perf_counter()
        children = [
            subprocess.Popen(
                self._command({**spec, "cache_dir": str(Path(cache_dir) / f"host-{host}")} if per_host else spec),
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for host in range(processes)
        ]
        ready = all(child.stdout is not None and child.stdout.readline().strip() == "ready" for child in children)
        before = self.server.assume_role_count()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n" if ready else "")
            child.stdin.flush()
        failed = [err for child in children if (err := child.communicate(timeout=300)[1]) and child.returncode]
        print(f"  {processes} x cache_process {lib}: {time.perf_counter() - started:.1f} s", flush=True)
        if failed or not ready:
            self._fail(spec, failed[0] if failed else "a process did not get ready")
            return None
        return self.server.assume_role_count() - before


def _pick(results: dict[str, dict[str, Any] | None], field: str) -> dict[str, float | None]:
    return {lib: (result[field] if result else None) for lib, result in results.items()}


def measure_sts_calls(runner: Runner, settings: Settings) -> list[Metric]:
    metrics = []
    for duration in settings.durations:
        print(f"STS calls per {settings.api_calls} API calls, DurationSeconds={duration}")
        spec = {"measure": "sts_calls", "duration": duration, "calls": settings.api_calls}
        results = runner.per_library(spec)
        metrics.append(
            Metric(
                key=f"sts_calls_{duration}",
                label=f"AssumeRole calls per {settings.api_calls} API calls, {duration} s credentials",
                unit="calls",
                values=_pick(results, "assume_role_calls"),
            )
        )
    return metrics


def measure_create_time(runner: Runner, settings: Settings) -> list[Metric]:
    print(f"Session creation time, median of {settings.create_reps}")
    results = runner.per_library({"measure": "create_time", "duration": 3600, "reps": settings.create_reps})
    return [
        Metric(key="create_ms", label="Create a session (median)", unit="ms", values=_pick(results, "session_ms")),
        Metric(
            key="create_client_ms",
            label="Create a session + its first client (median)",
            unit="ms",
            values=_pick(results, "session_and_client_ms"),
        ),
    ]


def _memory_spec(lib: Library, settings: Settings) -> dict[str, Any]:
    sessions = settings.memory_sessions if lib is OURS else settings.peer_memory_sessions
    return {"measure": "memory", "lib": lib.key, "duration": 3600, "sessions": sessions}


def measure_memory(runner: Runner, settings: Settings) -> list[Metric]:
    print(f"Memory: {settings.memory_sessions} sessions (peers: {settings.peer_memory_sessions}, extrapolated)")
    results = {lib.key: runner.worker(_memory_spec(lib, settings)) for lib in runner.libraries}
    per_session = _pick(results, "mb_per_session")
    target = settings.memory_sessions
    extrapolated = {
        lib: f"measured at N={result['sessions']}, scaled to {target}"
        for lib, result in results.items()
        if result and result["sessions"] != target
    }
    return [
        Metric(key="mb_per_session", label="RSS per live session + STS client", unit="MB", values=per_session),
        Metric(
            key="mb_total",
            label=f"RSS for {target} live sessions + STS clients",
            unit="MB",
            values={lib: (None if v is None else round(v * target, 1)) for lib, v in per_session.items()},
            notes=extrapolated,
        ),
    ]


def _thread_metrics(results: dict[str, dict[str, Any] | None], key: str, title: str) -> list[Metric]:
    return [
        Metric(
            key=f"{key}_sts",
            label=f"{title}: AssumeRole calls per round",
            unit="calls",
            values=_pick(results, "assume_role_calls_per_round"),
        ),
        Metric(key=f"{key}_p50", label=f"{title}: API call p50", unit="ms", values=_pick(results, "p50_ms")),
        Metric(key=f"{key}_p99", label=f"{title}: API call p99", unit="ms", values=_pick(results, "p99_ms")),
    ]


def measure_threads(runner: Runner, settings: Settings) -> list[Metric]:
    threads, calls, rounds = settings.thread_count, settings.calls_per_thread, settings.thread_rounds
    base = {"measure": "threads", "thread_count": threads, "calls": calls, "rounds": rounds}
    shape = f"{threads} threads x {calls} calls"
    print(f"{shape} x {rounds} rounds, 3600 s credentials {settings.refresh_margin} s before expiry")
    at_refresh = runner.per_library({**base, "duration": 3600, "clock_offset": 3600 - settings.refresh_margin})
    print(f"{shape} x {rounds} rounds, 900 s credentials")
    short = runner.per_library({**base, "duration": 900, "clock_offset": 0})
    return [
        *_thread_metrics(at_refresh, "threads_refresh", f"{shape}, 3600 s creds, {settings.refresh_margin} s left"),
        *_thread_metrics(short, "threads_900", f"{shape}, 900 s creds"),
    ]


def measure_shared_cache(runner: Runner, settings: Settings, workdir: Path) -> list[Metric]:
    n, duration = settings.processes, settings.cache_duration
    print(f"{n} processes sharing a cache folder, {duration} s credentials")
    cold: dict[str, float | None] = {}
    warm: dict[str, float | None] = {}
    for lib in runner.libraries:
        cache_dir = workdir / f"cache-{lib.key}"
        cold[lib.key] = runner.cache_round(lib.key, duration, n, cache_dir)
        warm[lib.key] = runner.cache_round(lib.key, duration, n, cache_dir)
    no_cache = {lib.key: "no cross-process cache" for lib in runner.libraries if lib.cross_process_cache == "none"}
    return [
        Metric(
            key="procs_cold",
            label=f"{n} processes, cold shared cache: AssumeRole calls",
            unit="calls",
            values=cold,
            notes=no_cache,
        ),
        Metric(
            key="procs_warm",
            label=f"{n} more processes, warm shared cache: AssumeRole calls",
            unit="calls",
            values=warm,
            notes=no_cache,
        ),
    ]


def _noop_spec(runner: Runner, lib: str, duration: int, threads: int, settings: Settings) -> dict[str, Any]:
    calls = settings.noop_calls if threads == 1 else settings.noop_thread_calls
    warmup = settings.noop_warmup if threads == 1 else max(1, settings.noop_warmup // 4)
    paired = lib == OURS.key
    return {
        "measure": "noop_calls",
        "lib": lib,
        "duration": duration,
        "thread_count": threads,
        "calls": calls,
        "warmup": warmup,
        "endpoint_url": runner.noop_url,
        "blocks": settings.noop_blocks if paired else 1,
        "with_static": paired,
    }


def measure_noop(runner: Runner, settings: Settings) -> list[Metric]:
    """Per-call time against the no-op endpoint, relative to static credentials.

    Ours is measured in one process together with static credentials, in
    ``noop_blocks`` alternating blocks, so that both see the same machine load
    (they differ by well under a percent of a call); each peer in a process of
    its own, once. Every row's baseline is the static credentials of ours' process.
    """
    durations = (3600, 900)
    thread_counts = (1, settings.thread_count)
    print(
        f"No-op endpoint: {settings.noop_calls} calls at 1 thread, {settings.thread_count} threads x "
        f"{settings.noop_thread_calls}; ours and static keys in {settings.noop_blocks} alternating blocks"
    )
    metrics = []
    for duration in durations:
        for threads in thread_counts:
            results = {
                lib.key: runner.worker(_noop_spec(runner, lib.key, duration, threads, settings))
                for lib in runner.libraries
            }
            static = (results.get(OURS.key) or {}).get(STATIC)
            per_lib = {key: (result or {}).get(key) for key, result in results.items()}
            shape = (
                f"1 thread x {settings.noop_calls}"
                if threads == 1
                else f"{threads} threads x {settings.noop_thread_calls}"
            )
            sts = {
                key: f"{result['assume_role_calls']:g} AssumeRole calls while measured"
                for key, result in per_lib.items()
                if result and result["assume_role_calls"]
            }
            for field, what in (("p50_us", "p50"), ("mean_us", "mean")):
                metrics.append(
                    Metric(
                        key=f"noop_{duration}_{threads}t_{what}",
                        label=f"No-op endpoint, {duration} s creds, {shape} calls: API call {what}",
                        unit="µs",
                        values={key: (result[field] if result else None) for key, result in per_lib.items()},
                        notes=sts if what == "mean" else {},
                        baseline=static[field] if static else None,
                        versus_static=True,
                    )
                )
    return metrics


def measure_import(runner: Runner, settings: Settings, workdir: Path) -> list[Metric]:
    """Import time of a vendored copy, with and without a .pyc, after boto3."""
    libraries = [lib for lib in runner.libraries if lib.key in (OURS.key, "aws-assume-role-lib")]
    reps = settings.import_reps
    print(f"Import time of a vendored copy after boto3, median of {reps} fresh processes")
    env = {k: v for k, v in runner.env.items() if k != "PYTHONPATH"}
    try:
        times = import_time.measure([lib.module for lib in libraries], workdir / "import", env, reps)
    except (subprocess.CalledProcessError, RuntimeError) as error:
        runner.errors["import time"] = str(error)
        return []
    empty = times["pyc"][import_time.EMPTY_MODULE]

    def row(key: str, label: str, mode: str, notes: dict[str, str] | None = None) -> Metric:
        values: dict[str, float | None] = {lib.key: times[mode][lib.module] for lib in libraries}
        return Metric(key=key, label=label, unit="ms", values=values, notes=notes or {})

    return [
        row("import_no_pyc_ms", f"Import after boto3, no .pyc (median of {reps})", "no_pyc"),
        row("import_pyc_ms", f"Import after boto3, with .pyc (median of {reps})", "pyc"),
        row(
            "import_module_level_ms",
            "Module-level work (import with .pyc minus an empty module's)",
            "module_level",
            {lib.key: f"an empty module's import: {empty:g} ms" for lib in libraries[:1]},
        ),
    ]


def collect(
    env: dict[str, str],
    libraries: list[Library],
    settings: Settings,
    workdir: Path,
    noop_url: str,
    only: tuple[str, ...] = GROUPS,
) -> tuple[list[Metric], dict[str, str]]:
    """The measurements of the groups in ``only``. The memory processes run in the
    background while the phases that only count STS calls run; the timed phases run alone."""
    runner = Runner(env, libraries, noop_url)
    groups: dict[str, list[Metric]] = {}
    with ThreadPoolExecutor(max_workers=1) as background:
        memory = background.submit(measure_memory, runner, settings) if "memory" in only else None
        if "sts" in only:
            groups["sts"] = measure_sts_calls(runner, settings)
        if "cache" in only:
            groups["cache"] = measure_shared_cache(runner, settings, workdir)
        if "fleet" in only:
            groups["fleet"] = fleet.measure_fleet(runner, settings, workdir)
        if memory is not None:
            groups["memory"] = memory.result()
    timed: dict[str, Callable[[], list[Metric]]] = {
        "create": lambda: measure_create_time(runner, settings),
        "threads": lambda: measure_threads(runner, settings),
        "noop": lambda: measure_noop(runner, settings),
        "import": lambda: measure_import(runner, settings, workdir),
    }
    for group, measure in timed.items():
        if group in only:
            groups[group] = measure()
    return [metric for group in GROUPS for metric in groups.get(group, [])], runner.errors


# The asyncio rows (bench/aio.py) need an environment of their own (aioboto3 pins an
# older botocore): only with ``--only aio``, not in the default run.
AIO_GROUP = "aio"


def _groups(text: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in chosen if name not in (*GROUPS, AIO_GROUP)]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join((*GROUPS, AIO_GROUP))}")
    return chosen


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument(
        "--out",
        type=Path,
        help="where latest.{json,md,png} go (default bench/results, or bench/results/partial with --only)",
    )
    parser.add_argument("--peer-memory-sessions", type=int, help="N for the peers' memory test (default 200)")
    parser.add_argument(
        "--only",
        type=_groups,
        default=GROUPS,
        help=f"comma-separated groups of rows to run: {','.join(GROUPS)} (default all), or {AIO_GROUP} "
        "(the asyncio rows, in an environment with aioboto3 and aioboto3-assume)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    settings = QUICK if args.quick else Settings()
    if args.peer_memory_sessions:
        settings = Settings(**{**asdict(settings), "peer_memory_sessions": args.peer_memory_sessions})
    status = 0
    if AIO_GROUP in args.only:
        status = _run_aio(args)
    only = tuple(group for group in args.only if group != AIO_GROUP)
    if not only:
        return status
    libraries = [lib for lib in LIBRARIES if lib.available()]
    out = args.out or (RESULTS_DIR if only == GROUPS else RESULTS_DIR / "partial")
    started, load_at_start = time.perf_counter(), report.load_average()
    with tempfile.TemporaryDirectory(prefix="arc-bench-") as tmp:
        workdir = Path(tmp)
        with running_server(isolated_env(workdir)) as endpoint, running_noop_server(isolated_env(workdir)) as noop:
            env = isolated_env(workdir, endpoint)
            metrics, errors = collect(env, libraries, settings, workdir, noop, only)
    meta = report.metadata(libraries, asdict(settings), time.perf_counter() - started, errors, load_at_start)
    meta["groups"] = list(only)
    report.write_all(metrics, meta, out)
    return 1 if errors or status else 0


def _run_aio(args: argparse.Namespace) -> int:
    from bench import aio

    with tempfile.TemporaryDirectory(prefix="arc-bench-aio-") as tmp:
        workdir = Path(tmp)
        with running_server(isolated_env(workdir)) as endpoint:
            return aio.run(isolated_env(workdir, endpoint), args.quick, args.out)
