"""assume_role_chain.py depends on nothing but the standard library, boto3 and botocore
(the fleet caches' optional redis and cryptography are imported only when used).

The core tests themselves run against a vendored copy in the floor environment
(``tests/run.sh``, plugin ``tests.packaging.vendored``); a copy in a venv holding
only boto3 is exercised in ``test_packaging.py``.
"""

from __future__ import annotations

import ast
import sys

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
