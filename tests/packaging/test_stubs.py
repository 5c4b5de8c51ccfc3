"""The committed type stubs are what make_stubs.py writes now, and they are right."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import make_stubs

ROOT = make_stubs.ROOT


@pytest.mark.parametrize("module", make_stubs.MODULES)
def test_committed_stubs_match_the_sources(module: str) -> None:
    expected = make_stubs.make_stub((ROOT / f"{module}.py").read_text(encoding="utf-8"), module)
    path = make_stubs.stub_path(module)
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    assert committed == expected, f"{path.relative_to(ROOT)} is out of date: run python tests/packaging/make_stubs.py"


def importable(module: str) -> bool:
    """Whether the module imports here: assume_role_chain_aio needs aioboto3, installed in .venv-aio only."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# The stubs of the modules that import here: every one in .venv-aio, which runs this file
# too (tests/run.sh); aioboto3 and aiobotocore are untyped, seen as Any.
MYPY_CONFIG = "[mypy]\n[mypy-aioboto3.*,aiobotocore.*]\nignore_missing_imports = True\n"


def test_stubs_type_check_and_agree_with_the_runtime(tmp_path: Path) -> None:
    """mypy --strict accepts the stubs; mypy's stubtest finds no difference from the modules."""
    pytest.importorskip("mypy")
    modules = [module for module in make_stubs.MODULES if importable(module)]
    for module in modules:  # stubtest finds stubs on MYPYPATH as <module>.pyi
        shutil.copy(make_stubs.stub_path(module), tmp_path / f"{module}.pyi")
    (tmp_path / "mypy.ini").write_text(MYPY_CONFIG)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini", "--cache-dir", str(ROOT / ".mypy_cache"),
         *(f"{m}.pyi" for m in modules)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    allowlist = tmp_path / "allowlist.txt"  # stubtest takes a runtime Literal alias for a function
    allowlist.write_text("".join(f"{m}.{name}\n" for m in modules for name in _literal_aliases(m)))
    tested = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(tmp_path / "mypy.ini"),
         "--allowlist", str(allowlist), *modules],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "MYPYPATH": str(tmp_path)},
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _literal_aliases(module: str) -> list[str]:
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    return [
        node.targets[0].id for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Subscript) and ast.unparse(node.value.value).endswith("Literal")
    ]

