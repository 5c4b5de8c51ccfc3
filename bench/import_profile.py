"""What the module-level work of ``assume_role_chain`` costs, statement by statement.

    python -m bench.import_profile [--reps 15] [--top 25] [--module assume_role_chain]

With boto3 already imported (as in a Lambda handler), in ``reps`` fresh processes:

1. ``python -X importtime`` of a copy compiled to a .pyc (unchecked hash): the
   modules that ``import MODULE`` loads beyond what boto3 already loaded, with
   their own ("self") time, median over the processes.
2. Each top-level statement of the module's body, compiled first (as from a .pyc)
   and then executed and timed on its own, in order, in a module namespace
   registered in ``sys.modules``, with the cyclic GC paused (compiling statement
   by statement allocates enough to set off full collections that a real import
   does not): the median time of each statement (imports, ``re.compile`` calls,
   classes, dataclasses, ...).
3. A cProfile of the whole body (one process), for the functions behind those
   statements (``re._compiler``, ``dataclasses``, ``typing``, ``abc``).
"""

import __future__

import ast
import cProfile
import gc
import importlib.util
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from bench import import_time


def _source_path(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return Path(spec.origin)


def _statement_label(node: ast.stmt, source_lines: list[str]) -> str:
    text = source_lines[node.lineno - 1].strip()
    if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.decorator_list:
        text = source_lines[node.decorator_list[0].lineno - 1].strip() + " " + text
    return f"line {node.lineno}: {text[:90]}"


def _compiled_statements(path: Path) -> list[tuple[str, types.CodeType]]:
    """Each top-level statement compiled alone, honouring ``from __future__`` imports."""
    source = path.read_text()
    lines = source.splitlines()
    flags = 0
    compiled = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                flags |= getattr(__future__, alias.name).compiler_flag
        code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec", flags=flags, dont_inherit=True)
        compiled.append((_statement_label(node, lines), code))
    return compiled


def _fresh_namespace(module: str, path: Path) -> dict[str, Any]:
    namespace = types.ModuleType(module)
    namespace.__file__ = str(path)
    sys.modules[module] = namespace
    return namespace.__dict__


def time_statements(module: str) -> list[tuple[str, float]]:
    """(statement, seconds) for each top-level statement; call in a fresh process."""
    import boto3  # noqa: F401  (already imported in a Lambda handler)

    path = _source_path(module)
    statements = _compiled_statements(path)
    namespace = _fresh_namespace(module, path)
    timings = []
    gc.collect()
    gc.disable()
    for label, code in statements:
        start = time.perf_counter()
        exec(code, namespace)
        timings.append((label, time.perf_counter() - start))
    gc.enable()
    return timings


def profile_body(module: str, top: int) -> str:
    """cProfile of the whole module body (compiled beforehand); call in a fresh process."""
    import boto3  # noqa: F401

    path = _source_path(module)
    code = compile(path.read_text(), str(path), "exec", dont_inherit=True)
    namespace = _fresh_namespace(module, path)
    profiler = cProfile.Profile()
    profiler.enable()
    exec(code, namespace)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def importtime(module: str, folder: str) -> dict[str, float]:
    """Self time (µs) of every module that ``import module`` (from ``folder``) loads after boto3."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import boto3; import {module}"],
        env={**os.environ, "PYTHONPATH": folder},
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    # importtime writes to stderr; the lines after boto3's are ours. Find boto3's
    # top-level line ("|   boto3" with no nesting) and take what follows.
    lines = done.stderr.splitlines()
    boto3_line = max(i for i, line in enumerate(lines) if line.rstrip().endswith("| boto3"))
    result: dict[str, float] = {}
    for line in lines[boto3_line + 1 :]:
        parts = [part.strip() for part in line.split("|")]
        if len(parts) == 3 and parts[0].replace("import time:", "").strip().isdigit():
            result[line.split("|")[2].rstrip()] = float(parts[0].replace("import time:", ""))
    return result


def _child(argv: list[str]) -> None:
    kind, module = argv[0], argv[1]
    if kind == "statements":
        print(json.dumps(time_statements(module)))
    elif kind == "importtime":
        print(json.dumps(importtime(module, argv[2])))
    else:
        print(profile_body(module, int(argv[2])))


def _run_child(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bench.import_profile", "--child", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    import argparse  # not at module level: the statement timings must see its import cost

    parser = argparse.ArgumentParser(prog="python -m bench.import_profile", description=__doc__)
    parser.add_argument("--module", default="assume_role_chain")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    module, reps, top = args.module, args.reps, args.top

    with tempfile.TemporaryDirectory(prefix="arc-importtime-") as tmp:
        folder = import_time.vendored_copy([module], Path(tmp))
        import_time.compile_unchecked(folder)
        runs = [json.loads(_run_child("importtime", module, str(folder))) for _ in range(reps)]
    names = {name for run in runs for name in run}
    self_us = {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names}
    print(f"1. python -X importtime, after boto3, with .pyc: modules loaded by `import {module}` (median of {reps})")
    print(f"   total self time {sum(self_us.values()) / 1000:.2f} ms")
    for name, us in sorted(self_us.items(), key=lambda item: -item[1])[:top]:
        print(f"   {us / 1000:7.3f} ms  {name}")

    samples: dict[str, list[float]] = {}
    for _ in range(reps):
        for label, seconds in json.loads(_run_child("statements", module)):
            samples.setdefault(label, []).append(seconds)
    medians = {label: statistics.median(values) for label, values in samples.items()}
    total = sum(medians.values())
    print(f"\n2. Top-level statements of {module} (median of {reps} fresh processes), total {total * 1000:.2f} ms")
    for label, seconds in sorted(medians.items(), key=lambda item: -item[1])[:top]:
        print(f"   {seconds * 1000:7.3f} ms  {label}")
    groups = {
        "re.compile": lambda label: "re.compile(" in label,
        "@dataclasses.dataclass classes": lambda label: "@dataclasses.dataclass" in label,
        "import statements": lambda label: ": import " in label or ": from " in label or ": try:" in label,
        "other classes": lambda label: ": class " in label,
        "functions": lambda label: ": def " in label or (": @" in label and " def " in label),
    }
    print("   by kind:")
    for kind, matches in groups.items():
        chosen = [seconds for label, seconds in medians.items() if matches(label)]
        print(f"   {sum(chosen) * 1000:7.3f} ms  {kind} ({len(chosen)} statements)")

    print(f"\n3. cProfile of the module body (one process), top {top} by cumulative time")
    print(_run_child("profile", module, str(top)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    else:
        main()
