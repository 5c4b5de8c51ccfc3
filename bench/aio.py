"""The asyncio rows: assume_role_chain_aio vs aioboto3-assume (``python -m bench --only aio``).

aioboto3 pins an older botocore than the newest, so these rows run in an environment of
their own (bench/README.md, "asyncio"): every worker is a fresh process of this
interpreter (``python -m bench.aio_worker``) against the same moto server as the other
rows. Writes ``latest.json`` and ``latest.md`` into ``bench/results/aio``.
"""

import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.env import REPO_ROOT

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "aio"
LIBS = ("assume-role-chain", "aioboto3-assume")


@dataclass(frozen=True)
class AioSettings:
    api_calls: int = 200
    duration: int = 900
    tasks: int = 1000
    task_duration: int = 3600
    clock_offset: int = 3300  # 5 minutes left: the mandatory window of both libraries
    rounds: int = 2
    memory_sessions: int = 100


QUICK = AioSettings(api_calls=20, tasks=100, rounds=1, memory_sessions=20)


def _worker(spec: dict[str, Any], env: dict[str, str], errors: dict[str, str]) -> dict[str, Any] | None:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.aio_worker", json.dumps(spec)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    label = f"{spec['measure']} {spec['lib']}"
    print(f"  aio {label}: {time.perf_counter() - started:.1f} s", flush=True)
    if done.returncode != 0:
        errors[label] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        print(f"  ! aio {label} failed: {errors[label]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def collect(env: dict[str, str], settings: AioSettings) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows: a label, a unit and each library's value (lower is better)."""
    errors: dict[str, str] = {}

    def per_lib(spec: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
        return {lib: _worker({**spec, "lib": lib}, env, errors) for lib in LIBS}

    sts = per_lib({"measure": "sts_calls", "duration": settings.duration, "calls": settings.api_calls})
    tasks = per_lib({
        "measure": "tasks", "duration": settings.task_duration, "task_count": settings.tasks,
        "clock_offset": settings.clock_offset, "rounds": settings.rounds,
    })
    memory = per_lib({"measure": "memory", "duration": settings.duration, "sessions": settings.memory_sessions})

    def row(label: str, unit: str, results: dict[str, dict[str, Any] | None], field: str) -> dict[str, Any]:
        return {"label": label, "unit": unit,
                "values": {lib: (result or {}).get(field) for lib, result in results.items()}}

    rows = [
        row(f"asyncio: AssumeRole calls per {settings.api_calls} API calls, DurationSeconds={settings.duration}",
            "calls", sts, "assume_role_calls"),
        row(f"asyncio: {settings.tasks} concurrent tasks across a refresh: AssumeRole calls per refresh",
            "calls", tasks, "assume_role_calls_per_round"),
        row(f"asyncio: {settings.tasks} concurrent tasks across a refresh: p50 of API calls", "ms", tasks, "p50_ms"),
        row(f"asyncio: {settings.tasks} concurrent tasks across a refresh: p99 of API calls", "ms", tasks, "p99_ms"),
        row("asyncio: RSS per live session with one open STS client", "MB", memory, "mb_per_session"),
    ]
    task_errors = {lib: (result or {}).get("errors") for lib, result in tasks.items()}
    if any(task_errors.values()):
        errors["tasks: failed API calls"] = json.dumps(task_errors)
    return rows, errors


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}"


def _ratio(values: dict[str, Any]) -> str:
    ours, peer = values.get(LIBS[0]), values.get(LIBS[1])
    return f"{ours / peer:.2f}" if ours is not None and peer else "n/a"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"| Metric (lower is better) | {LIBS[0]} (assume_role_chain_aio) | {LIBS[1]} | ours ÷ peer |",
        "|---|---|---|---|",
        *(f"| {r['label']} [{r['unit']}] | {_cell(r['values'][LIBS[0]])} | {_cell(r['values'][LIBS[1]])} "
          f"| {_ratio(r['values'])} |" for r in rows),
        "",
        f"Python {meta['python']}, {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}; "
        f"{meta['machine']}; {meta['seconds']:.0f} s.",
    ]
    if meta["errors"]:
        lines += ["", "Errors: " + "; ".join(f"{k}: {v}" for k, v in meta["errors"].items())]
    return "\n".join(lines) + "\n"


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(env: dict[str, str], quick: bool, out: Path | None) -> int:
    """Measure, print the table, write latest.json and latest.md; 1 if a measurement failed."""
    missing = [name for name in ("aioboto3", "aioboto3-assume", "psutil") if _version(name) is None]
    if missing:
        print(f"bench --only aio: install {', '.join(missing)} in this environment (bench/README.md, asyncio)",
              file=sys.stderr)
        return 1
    started = time.perf_counter()
    settings = QUICK if quick else AioSettings()
    rows, errors = collect(env, settings)
    meta = {
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in ("aioboto3", "aiobotocore", "botocore", "aioboto3-assume")},
        "machine": f"{platform.machine()}, {platform.system()}",
        "settings": settings.__dict__,
        "seconds": time.perf_counter() - started,
        "errors": errors,
    }
    folder = out or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=2) + "\n")
    table = markdown(rows, meta)
    (folder / "latest.md").write_text(table)
    print(table)
    return 1 if errors else 0
