"""Which suite tests call each check: read from the suites' source, for ``docs/checks.md``.

A test calls a check when its body names it, directly or through a helper function of the
same suite file (``_check_answer``, a fixture). A check no suite names is listed with the
package modules that call it (the load runner judges the SLO), or the checks that do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_vllm_conformance

PACKAGE = "pytest_vllm_conformance"


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted thing it stands for (modules and functions alike)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    names[alias.asname or alias.name] = alias.name
    return names


def _references(node: ast.AST, names: dict[str, str], methods: dict[str, str]) -> set[str]:
    """Dotted names a function body mentions through the file's imports, bare names, and
    the local methods it calls (``embedder.ok(...)``: ``Embedder.ok``)."""
    found: set[str] = set()
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Name)
            and sub.value.id in names
        ):
            found.add(f"{names[sub.value.id]}.{sub.attr}")
        elif isinstance(sub, ast.Attribute) and sub.attr in methods:
            found.add(f"local:{methods[sub.attr]}")
        elif isinstance(sub, ast.Name):
            found.add(names.get(sub.id, f"local:{sub.id}"))
    return found


def _functions(tree: ast.Module) -> dict[str, ast.AST]:
    """Top-level functions by name, and the methods of top-level classes as ``Class.name``."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[f"{node.name}.{item.name}"] = item
    return out


def _scan(path: Path, label: str, tests_only: bool, dotted: str = "") -> dict[str, set[str]]:
    """check qualname -> the functions of ``path`` that reach it (``label::name``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = _imports(tree)
    funcs = _functions(tree)
    methods = {name.split(".")[1]: name for name in funcs if "." in name}
    direct = {name: _references(node, names, methods) for name, node in funcs.items()}

    def reach(name: str, seen: set[str]) -> set[str]:
        out = set()
        for ref in direct.get(name, set()):
            local = ref.removeprefix("local:")
            if ref.startswith("local:") and local in funcs and local not in seen:
                out |= reach(local, seen | {local}) | {f"{dotted}.{local}"}
            else:
                out.add(ref)
        return out

    found: dict[str, set[str]] = {}
    for name in funcs:
        if tests_only and not name.startswith("test_"):
            continue
        for ref in reach(name, {name}):
            found.setdefault(ref, set()).add(
                f"{label}::{name}" if tests_only else f"{label}.{name}"
            )
    return found


def callers() -> dict[str, list[str]]:
    """check qualname -> suite tests that call it, else the package modules that do."""
    from pytest_vllm_conformance.checks.registry import all_checks
    from pytest_vllm_conformance.plugin import suites_dir

    registered = {c.qualname for c in all_checks()}
    by_suite: dict[str, set[str]] = {}
    for path in sorted(suites_dir().glob("test_*.py")):
        for ref, where in _scan(path, path.name, tests_only=True).items():
            by_suite.setdefault(ref, set()).update(where)
    by_module: dict[str, set[str]] = {}
    root = Path(pytest_vllm_conformance.__file__).parent
    for path in sorted(root.rglob("*.py")):
        dotted = ".".join((PACKAGE, *path.relative_to(root).with_suffix("").parts))
        module = dotted.removesuffix(".__init__")
        for ref, where in _scan(path, module, False, module).items():
            by_module.setdefault(ref, set()).update(where)
    out: dict[str, list[str]] = {}
    for name in registered:
        if name in by_suite:
            out[name] = sorted(by_suite[name])
        elif name in by_module:
            short = f"{PACKAGE}.checks."
            out[name] = sorted(
                "through " + m.removeprefix(short).removeprefix(f"{PACKAGE}.")
                for m in by_module[name]
                if m != name
            )
    return out
