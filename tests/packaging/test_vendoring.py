"""assume_role_chain.py depends on nothing but the standard library, boto3 and botocore
(the fleet caches' optional redis and cryptography are imported only when used).

The core tests themselves run against a vendored copy in the floor environment
(``tests/run.sh``, plugin ``tests.packaging.vendored``); a copy in a venv holding
only boto3 is exercised in ``test_packaging.py``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .vendored import ROOT

OPTIONAL = ("redis", "cryptography")  # the [fleet] extra: imported only inside the functions that need them


def imported_names(tree: ast.AST, *, in_functions: bool) -> set[str]:
    """Modules imported by ``tree``; inside function bodies too only if ``in_functions``."""
    names: set[str] = set()
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        if in_functions or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(node))
    return names


def test_imports_only_the_standard_library_boto3_and_botocore() -> None:
    tree = ast.parse((ROOT / "assume_role_chain.py").read_text(encoding="utf-8"))
    allowed = (*sys.stdlib_module_names, "boto3", "botocore")
    at_import = imported_names(tree, in_functions=False)
    everywhere = imported_names(tree, in_functions=True)
    assert sorted(n for n in at_import if n.partition(".")[0] not in allowed) == []
    assert sorted(n for n in everywhere if n.partition(".")[0] not in (*allowed, *OPTIONAL)) == []
    dynamic = [
        ast.unparse(node) for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("__import__", "import_module")
    ]
    assert dynamic == []
    assert {"boto3", "botocore.credentials"} <= at_import


def test_a_vendored_copy_on_a_read_only_file_system_uses_its_precompiled_bytecode(tmp_path: Path) -> None:
    """README's Lambda recipe: ``compileall --invalidation-mode unchecked-hash``, then a read-only folder.

    Proof that the .pyc is what runs: after compiling, the source is made to
    fail on import; the import still works, and ``python -v`` names the .pyc.
    """
    from tests.test_cache_failures import remount_read_only, tmpfs

    with tmpfs(tmp_path / "task", size="4m") as task:
        shutil.copy(ROOT / "assume_role_chain.py", task / "assume_role_chain.py")
        subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(task)], check=True)
        with (task / "assume_role_chain.py").open("a") as source:
            source.write("\nraise SystemExit('the source ran, not the bytecode')\n")
        remount_read_only(task)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(task)}
        script = "import boto3, assume_role_chain; print(assume_role_chain.__file__)"
        result = subprocess.run([sys.executable, "-v", "-c", script], cwd=task, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(task / "assume_role_chain.py")
    cached = task / "__pycache__" / f"assume_role_chain.{sys.implementation.cache_tag}.pyc"
    assert f"code object from '{cached}'" in result.stderr
