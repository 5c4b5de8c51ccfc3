"""Write the stub-only packages that carry the type information of the two modules.

PEP 561's ``py.typed`` marker works for packages only; a top-level module ships
its types as a stub-only package ``<module>-stubs/__init__.pyi`` in the same
wheel. The stubs are derived from the sources with :mod:`ast`: every import,
class, signature, public constant and type alias as written, every body
replaced by ``...``. (mypy's ``stubgen`` drops aliases such as
``Transport = Literal[...]`` that the signatures use, and types attributes set
in ``__init__`` as ``Incomplete``.) ``tests/packaging/test_stubs.py`` fails when
the committed stubs differ from what this writes.

Usage: ``python tests/packaging/make_stubs.py [--check]``
"""

from __future__ import annotations

import ast
import contextlib
import copy
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("assume_role_chain", "iot_x509", "assume_role_chain_aio")
HEADER = "# Generated from {module}.py by tests/packaging/make_stubs.py: do not edit.\n"
# Decorators that change what a name is for a type checker; others are dropped.
KEPT_DECORATORS = {
    "property", "staticmethod", "classmethod", "contextlib.contextmanager", "contextmanager",
    "dataclasses.dataclass", "dataclass", "functools.cached_property", "cached_property",
    "typing.overload", "overload", "abc.abstractmethod", "abstractmethod", "typing.final", "final",
}
# Subscripted names that make a module-level assignment a type alias.
TYPE_FORMS = {
    "Union", "Optional", "Literal", "Callable", "Annotated", "dict", "list", "tuple", "set", "frozenset",
    "type", "Mapping", "MutableMapping", "Sequence", "Iterable", "Iterator", "Dict", "List", "Tuple",
}


def stub_path(module: str) -> Path:
    return ROOT / f"{module}-stubs" / "__init__.pyi"


def make_stub(source: str, module: str) -> str:
    """The stub text for one module's source: public names, and the private classes they use."""
    tree = ast.parse(source)
    statements = _flatten(tree.body)
    returns = {n.name: ast.unparse(n.returns) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns
               else n.name for n in statements if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}
    items = [(_name(n), _module_statement(n, returns)) for n in statements]
    kept = [(name, lines) for name, lines in items if lines and not _private(name)]
    private = {name: lines for name, lines in items if lines and _private(name)}
    while True:  # private classes and aliases that a kept line names, until none is added
        text = "\n".join(line for _, lines in kept for line in lines)
        named = [name for name in private if re.search(rf"\b{name}\b", text)]
        if not named:
            break
        kept.extend((name, private.pop(name)) for name in named)
    order = {id(lines): i for i, (_, lines) in enumerate(items)}
    kept.sort(key=lambda item: order[id(item[1])])
    used = _used_names(text)
    imports: list[str] = []
    block = previous_end = emitted_block = 0
    for node in statements:  # the source's import blocks, reduced to the names the stub uses
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        block += node.lineno > previous_end + 1
        previous_end = node.end_lineno or node.lineno
        line = _import(node, used)
        if line:
            imports.extend(["", line] if imports and block != emitted_block else [line])
            emitted_block = block
    if "Any" in used and "Any" not in _imported_names(tree):
        imports.append("from typing import Any")
    body = [line for _, lines in kept for line in lines]
    return HEADER.format(module=module) + "\n".join(["", *imports, "", *body]).replace("\n\n\n", "\n\n") + "\n"


def _name(node: ast.stmt) -> str:
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    return ""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _import(node: ast.stmt, used: set[str]) -> str:
    """An import statement, reduced to the names in ``used``."""
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return ast.unparse(node)
    if not isinstance(node, (ast.Import, ast.ImportFrom)):
        return ""
    reduced = copy.copy(node)
    reduced.names = [a for a in node.names if (a.asname or a.name).split(".")[0] in used]
    return ast.unparse(reduced) if reduced.names else ""


def _used_names(text: str) -> set[str]:
    """Names that code uses, also inside string annotations, not inside ``Literal[...]``."""
    used: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node: ast.Name) -> None:
            used.add(node.id)

        def visit_Subscript(self, node: ast.Subscript) -> None:
            self.visit(node.value)
            if not ast.unparse(node.value).endswith("Literal"):
                self.visit(node.slice)

        def visit_Constant(self, node: ast.Constant) -> None:
            if isinstance(node.value, str):
                with contextlib.suppress(SyntaxError):
                    self.visit(ast.parse(node.value, mode="eval"))

    Visitor().visit(ast.parse(text))
    return used


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module statements, with the bodies of ``if TYPE_CHECKING:`` blocks inlined."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If) and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING":
            out.extend(_flatten(node.body))
        else:
            out.append(node)
    return out


def _imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in _flatten(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _module_statement(node: ast.stmt, returns: dict[str, str]) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return _function(node)
    if isinstance(node, ast.ClassDef):
        return ["", *_class(node, returns), ""]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        if ast.unparse(node.annotation).endswith("TypeAlias"):
            return [ast.unparse(node)]
        return [f"{node.target.id}: {ast.unparse(node.annotation)}"]
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        name, value = node.targets[0].id, node.value
        if name == "__all__" or _is_type_alias(value) or (isinstance(value, ast.Name) and value.id in returns):
            return [f"{name} = {ast.unparse(value)}"]
        return [f"{name}: {_value_type(value, returns)}"]
    return []  # docstrings, private state, try/if blocks, calls


def _is_type_alias(value: ast.expr) -> bool:
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.BitOr):
        return _is_type_alias(value.left) or _is_type_alias(value.right)
    return isinstance(value, ast.Subscript) and ast.unparse(value.value).split(".")[-1] in TYPE_FORMS


def _value_type(value: ast.expr, returns: dict[str, str]) -> str:
    """The type of a constant, of a call to a class or annotated function, or ``Any``."""
    if isinstance(value, ast.Constant):
        return "None" if value.value is None else type(value.value).__name__
    if isinstance(value, ast.JoinedStr):
        return "str"
    if isinstance(value, ast.BinOp):
        left, right = _value_type(value.left, returns), _value_type(value.right, returns)
        return left if left == right else "Any"
    if isinstance(value, ast.Call):
        func = ast.unparse(value.func)
        if func == "logging.getLogger":
            return "logging.Logger"
        if func in returns:
            return returns[func]
    return "Any"


def _function(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    stub = copy.copy(node)
    stub.args, stub.decorator_list = _stub_arguments(node.args), _decorators(node)
    stub.body = [ast.Expr(ast.Constant(...))]
    return (ast.unparse(stub).removesuffix(":\n    ...") + ": ...").splitlines()


def _stub_arguments(args: ast.arguments) -> ast.arguments:
    stub = ast.arguments(**{field: getattr(args, field) for field in args._fields})
    stub.defaults = [_stub_default(d) for d in args.defaults]
    stub.kw_defaults = [None if d is None else _stub_default(d) for d in args.kw_defaults]
    return stub


def _stub_default(value: ast.expr) -> ast.expr:
    """Simple constants as written (they document the default), anything else ``...``."""
    if isinstance(value, ast.Constant) and (not isinstance(value.value, (str, bytes)) or len(value.value) <= 40):
        return value
    return ast.Constant(...)


def _decorators(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[ast.expr]:
    kept = []
    for decorator in node.decorator_list:
        name = ast.unparse(decorator.func if isinstance(decorator, ast.Call) else decorator)
        if name in KEPT_DECORATORS or name.endswith((".setter", ".deleter")):
            kept.append(decorator)
    return kept


def _class(node: ast.ClassDef, returns: dict[str, str]) -> list[str]:
    header = copy.copy(node)
    header.decorator_list, header.body = _decorators(node), [ast.Pass()]
    lines = ast.unparse(header).splitlines()[:-1]
    body: list[str] = []
    declared: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            declared.add(item.name)
            if not _private(item.name):
                body.extend(_function(item))
        elif isinstance(item, ast.ClassDef):
            declared.add(item.name)
            body.extend(_class(item, returns))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            declared.add(item.target.id)
            body.append(_field(item))
        elif isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
            name = item.targets[0].id
            declared.add(name)
            if not _private(name):
                body.append(f"{name}: {_value_type(item.value, returns)}")
    init = next((i for i in node.body if isinstance(i, ast.FunctionDef) and i.name == "__init__"), None)
    attributes = _instance_attributes(init, declared, returns) if init else []
    if not attributes + body:
        return [lines[0] + " ..."] if len(lines) == 1 else [*lines[:-1], lines[-1] + " ..."]
    return lines + ["    " + line for line in attributes + body]


def _field(item: ast.AnnAssign) -> str:
    """``name: T`` plus ``= ...`` when it has a default (a dataclass ``field()`` without one has none)."""
    text = f"{ast.unparse(item.target)}: {ast.unparse(item.annotation)}"
    value = item.value
    if value is None:
        return text
    if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field" \
            and not any(k.arg in ("default", "default_factory") for k in value.keywords):
        return text
    return text + " = ..."


def _instance_attributes(init: ast.FunctionDef, declared: set[str], returns: dict[str, str]) -> list[str]:
    """Public ``self.x`` attributes set in ``__init__``, typed by annotation, parameter or constant."""
    params = {a.arg: a.annotation for a in [*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs]}
    found: dict[str, str] = {}
    for node in ast.walk(init):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        annotation: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value, annotation = node.targets, node.value, None
        elif isinstance(node, ast.AnnAssign):
            targets, value, annotation = [node.target], node.value, node.annotation
        for target in targets:
            if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                    and target.value.id == "self") or target.attr.startswith("_") or target.attr in declared:
                continue
            parameter = params.get(value.id) if isinstance(value, ast.Name) else None
            if annotation is not None:
                kind = ast.unparse(annotation)
            elif parameter is not None:
                kind = ast.unparse(parameter)
            else:
                kind = _value_type(value, returns) if value is not None else "Any"
            found.setdefault(target.attr, kind)
    return [f"{name}: {kind}" for name, kind in found.items()]


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = []
    for module in MODULES:
        text = make_stub((ROOT / f"{module}.py").read_text(encoding="utf-8"), module)
        path = stub_path(module)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not check:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if check else 'wrote'}: {path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
