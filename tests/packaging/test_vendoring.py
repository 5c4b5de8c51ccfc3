"""assume_role_chain.py depends on nothing but the standard library, boto3 and botocore.

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


def test_imports_only_the_standard_library_boto3_and_botocore() -> None:
    tree = ast.parse((ROOT / "assume_role_chain.py").read_text(encoding="utf-8"))
    imported: set[str] = set()
    dynamic: list[str] = []
    for node in ast.walk(tree):  # module level and inside functions
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in ("__import__", "import_module"):
            dynamic.append(ast.unparse(node))
    outside = sorted(n for n in imported if n.partition(".")[0] not in (*sys.stdlib_module_names, "boto3", "botocore"))
    assert outside == []
    assert dynamic == []
    assert {"boto3", "botocore.credentials"} <= imported


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
