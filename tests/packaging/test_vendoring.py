"""assume_role_chain.py depends on nothing but the standard library, boto3 and botocore.

The core tests themselves run against a vendored copy in the floor environment
(``tests/run.sh``, plugin ``tests.packaging.vendored``); a copy in a venv holding
only boto3 is exercised in ``test_packaging.py``.
"""

from __future__ import annotations

import ast
import sys

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
