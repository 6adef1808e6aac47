"""No import cycle between tokenzip's modules at module level (imports inside functions and under
``if TYPE_CHECKING:`` are not counted: they do not run when a module is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import tokenzip

SRC = Path(tokenzip.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module under the package directory ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def module_level_imports(body: list[ast.stmt]):
    """Import statements that run on import: at top level, in top-level if/try/with blocks and class bodies."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _type_checking(node.test):
                yield from module_level_imports(node.body)
            yield from module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from module_level_imports(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from module_level_imports(node.body)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level (``from pkg import sub`` counts ``pkg.sub``)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in module_level_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
                continue
            source = node.module
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            if source in modules:
                edges |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search, modules in sorted order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_module_level_import_cycle():
    graph = import_graph(SRC)
    assert len(graph) > 100 and graph["tokenzip.kv.methods.knorm"] >= {"tokenzip.kv.base", "tokenzip.registry"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle or [])


def test_the_check_finds_a_cycle_and_ignores_function_and_type_checking_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (package / "sub" / "b.py").write_text("def f():\n    import pkg.a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert find_cycle(import_graph(package)) is None
    (package / "sub" / "b.py").write_text("from .. import c\n")  # c -> a only; add a -> sub -> b -> c
    (package / "a.py").write_text("from pkg.sub import b\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
