"""pytest plugin: run the tests against assume_role_chain.py vendored alone.

``python -m pytest -p tests.packaging.vendored`` copies ``assume_role_chain.py``
alone into an empty folder (as a Lambda function vendors it), imports that copy
before any test does, and fails the run if the copy is not the module the tests
used or if it imported anything, at any time during the run, but the standard
library, boto3, botocore and their dependencies. ``tests/run.sh`` runs the
floor environment this way.
"""

from __future__ import annotations

import builtins
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# boto3 and botocore, and what they depend on (in Lambda's runtime too).
ALLOWED = frozenset({"boto3", "botocore", "jmespath", "dateutil", "urllib3", "s3transfer", "six"})
# The fleet caches' extra, imported only when asked for (RedisCache.from_url, an
# encryption_key): tests/test_fleet_cache.py checks a plain import takes neither.
OPTIONAL = frozenset({"redis", "cryptography"})
_state: dict[str, Any] = {"outside": set()}


def allowed_import(name: str) -> bool:
    top = name.partition(".")[0]
    return top in sys.stdlib_module_names or top in ALLOWED or top in OPTIONAL


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Before any conftest is imported."""
    if "assume_role_chain" in sys.modules:
        raise pytest.UsageError("tests.packaging.vendored: assume_role_chain was imported before the plugin")
    folder = Path(tempfile.mkdtemp(prefix="vendored-"))
    copy = folder / "assume_role_chain.py"
    shutil.copy2(ROOT / "assume_role_chain.py", copy)
    sys.path.insert(0, str(folder))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    real_import = builtins.__import__

    def watched_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and globals is not None and globals.get("__name__") == "assume_role_chain" \
                and not allowed_import(name):
            _state["outside"].add(name)
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = watched_import
    import assume_role_chain

    _state.update(copy=copy, module=assume_role_chain)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    copy, module = _state.get("copy"), _state.get("module")
    if copy is None:
        return
    problems = []
    if sys.modules.get("assume_role_chain") is not module or Path(getattr(module, "__file__", "")) != copy:
        problems.append(f"the tests did not use the vendored copy {copy}")
    if _state["outside"]:
        problems.append(f"the vendored copy imported {sorted(_state['outside'])}")
    _state["problems"] = problems
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    if "copy" in _state:
        shutil.rmtree(_state["copy"].parent, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "copy" not in _state:
        return
    problems = _state.get("problems", [])
    for problem in problems:
        terminalreporter.write_line(f"VENDORED COPY FAILED: {problem}", red=True)
    if not problems:
        terminalreporter.write_line(
            f"vendored copy {_state['copy']}: used by every test, imported only the standard library, "
            "boto3, botocore and their dependencies"
        )
