"""The package's shape, as docs/architecture.md promises it: functions that fit on a screen,
modules with one job, and imports that run one way (no cycle between the package's modules).

The places that still break a rule are listed, one a line, in tests/structure_debt.txt (issue
13's refactor works them off). The list only shrinks: a new breach fails, and so does an entry
that no longer breaks its rule (delete the line)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "django_zerodeploy"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500
DEBT = Path(__file__).with_name("structure_debt.txt")


def _sources() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if "migrations" not in p.relative_to(PACKAGE).parts
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - first + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)"
                )
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, at the top or inside a function (an import
    moved into a function to dodge a cycle is still that cycle); not under ``if TYPE_CHECKING``,
    and not the models."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    body = list(ast.parse(path.read_text(), str(path)).body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if not isinstance(node, ast.Import | ast.ImportFrom):
            body.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # a submodule, or a name defined in the module
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {t for t in targets if t in known and t != name and not _is_models(t)}


def _is_models(module: str) -> bool:
    """Model imports inside functions wait for the app registry, not for a cycle."""
    return module.rsplit(".", 1)[-1] in ("models", "apps")


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in _sources()}
    graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    # a submodule's import runs its packages' __init__ first: an edge to each parent package
    for name, edges in graph.items():
        for target in list(edges):
            parts = target.split(".")
            edges.update(
                ".".join(parts[:i])
                for i in range(2, len(parts))
                if ".".join(parts[:i]) in graph and not name.startswith(".".join(parts[:i]))
            )
    return graph


def _breaches() -> set[str]:
    """Every place that breaks a rule, as its line in structure_debt.txt."""
    found: set[str] = set()
    for path in _sources():
        rel = path.relative_to(PACKAGE)
        found.update(f"function {rel}:{entry.split()[1]}" for entry in _long_functions(path))
        if len(path.read_text().splitlines()) > MAX_MODULE_LINES:
            found.add(f"module {rel}")
    found.update(f"cycle {module}" for module in _modules_in_cycles())
    return found


def _modules_in_cycles() -> set[str]:
    """Every module an import path leads back to (the cycle lines of the debt list: they stay
    the same whichever way a cycle is walked, and only go when the module leaves every cycle)."""
    graph = _graph()
    looped = set()
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        if start in seen:
            looped.add(start)
    return looped


def _debt() -> set[str]:
    lines = (line.strip() for line in DEBT.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def test_no_new_breach_of_the_package_shape() -> None:
    """Functions <= 60 lines, modules <= 500 lines, no import cycle: beyond the listed debt."""
    assert sorted(_breaches() - _debt()) == []


def test_the_debt_list_only_holds_real_breaches() -> None:
    assert sorted(_debt() - _breaches()) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "django_zerodeploy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from .a import thing\n")
    (package / "c.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", package)
    assert _modules_in_cycles() == {"django_zerodeploy.a", "django_zerodeploy.b"}
