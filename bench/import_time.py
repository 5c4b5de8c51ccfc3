"""Import time of a vendored copy of a library, as in a Lambda cold start.

Each sample is a fresh process that imports boto3 first (as a Lambda handler
would) and then times ``import MODULE`` of a copy of the library in a temporary
folder, which is first on ``sys.path``:

* without a .pyc: ``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__``, so the
  source is compiled on every import;
* with a .pyc: after ``python -m compileall --invalidation-mode unchecked-hash``
  on the copy (what a deployment package can ship);
* an empty module, imported the same way with its .pyc, gives the bare cost of an
  import; "module-level work" is the import with a .pyc minus that cost.

The standard-library modules a library imports have their own .pyc files, as in
the Lambda runtime; their cost is part of the measured import.
"""

import importlib.util
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

EMPTY_MODULE = "arc_bench_empty"

_TIMED_IMPORT = (
    "import sys, time, boto3\n"
    "start = time.perf_counter()\n"
    "module = __import__(sys.argv[1])\n"
    "elapsed = time.perf_counter() - start\n"
    "assert module.__file__.startswith(sys.argv[2]), module.__file__\n"
    "print(elapsed)\n"
)


def module_source(module: str) -> Path:
    """The file (for a module) or folder (for a package) that ``import module`` loads."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def vendored_copy(modules: list[str], folder: Path) -> Path:
    """Copy each module (without any ``__pycache__``) and an empty module into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for module in modules:
        source = module_source(module)
        if source.is_dir():
            shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, folder / source.name)
    (folder / f"{EMPTY_MODULE}.py").write_text("")
    return folder


def compile_unchecked(folder: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(folder)],
        check=True,
    )


def has_bytecode(folder: Path) -> bool:
    return any(folder.rglob("*.pyc"))


def import_seconds(module: str, folder: Path, env: dict[str, str]) -> float:
    """One fresh process: seconds to import ``module`` from ``folder`` after boto3."""
    child_env = {**env, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_IMPORT, module, str(folder)],
        env=child_env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())


def median_ms(modules: list[str], folder: Path, env: dict[str, str], reps: int) -> dict[str, float]:
    """Median import time per module over ``reps`` interleaved rounds, in ms."""
    samples: dict[str, list[float]] = {module: [] for module in modules}
    for _ in range(reps):
        for module in modules:
            samples[module].append(import_seconds(module, folder, env))
    return {module: round(statistics.median(values) * 1000, 2) for module, values in samples.items()}


def measure(modules: list[str], workdir: Path, env: dict[str, str], reps: int) -> dict[str, dict[str, float]]:
    """``{"no_pyc": {module: ms}, "pyc": {module: ms}, "module_level": {module: ms}}``;
    ``pyc`` also has the empty module's time."""
    folder = vendored_copy(modules, workdir / "vendored")
    if has_bytecode(folder):
        raise RuntimeError(f"{folder} has .pyc files before the no-.pyc measurement")
    no_pyc = median_ms(modules, folder, env, reps)
    if has_bytecode(folder):
        raise RuntimeError("a .pyc was written despite PYTHONDONTWRITEBYTECODE")
    compile_unchecked(folder)
    pyc = median_ms([EMPTY_MODULE, *modules], folder, env, reps)
    empty = pyc[EMPTY_MODULE]
    return {
        "no_pyc": no_pyc,
        "pyc": pyc,
        "module_level": {module: round(pyc[module] - empty, 2) for module in modules},
    }
