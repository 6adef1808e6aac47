"""No import cycle between tokenzip's modules, counting every import statement: at module level and inside
functions (an import deferred into a function still ties the two modules together), but not those under
``if TYPE_CHECKING:`` (annotations only). And transformers is imported only behind ``tokenzip.models``."""

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


def imports(body: list[ast.stmt]):
    """Every import statement in ``body``, however deeply nested, except under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            yield from imports(node.orelse)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    yield from imports([child])


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere (``from pkg import sub`` counts ``pkg.sub``)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
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


def test_no_import_cycle():
    graph = import_graph(SRC)
    assert len(graph) > 100 and graph["tokenzip.kv.methods.knorm"] >= {"tokenzip.kv.base", "tokenzip.method"}
    assert "tokenzip.kv.runtime" in graph["tokenzip.hooks"]  # imported inside attach_method(): counted
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def imports_of(path: Path, package: str) -> list[int]:
    """Lines of ``path`` importing ``package`` or one of its modules."""
    lines = []
    for node in imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if not getattr(node, "level", 0) and any(n == package or n.startswith(package + ".") for n in names):
            lines.append(node.lineno)
    return lines


def test_transformers_is_imported_only_behind_models():
    """DESIGN.md's boundary: transformers' calling conventions, caches and loaders live in ``tokenzip.models``
    (``tokenzip.testing`` builds the tiny transformers models of the tests, so it may too)."""
    allowed = {"models", "testing.py"}
    outside = {str(path.relative_to(SRC)): lines for path in sorted(SRC.rglob("*.py"))
               if path.relative_to(SRC).parts[0] not in allowed and (lines := imports_of(path, "transformers"))}
    assert outside == {}
    assert imports_of(SRC / "models" / "loading.py", "transformers")  # the check sees imports inside functions


def test_the_check_finds_a_cycle_through_function_imports_and_ignores_type_checking(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n")
    (package / "sub" / "b.py").write_text("def f():\n    import pkg.a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert find_cycle(import_graph(package)) is None
    (package / "a.py").write_text("def f():\n    if True:\n        from pkg import c\n")  # a -> c -> a
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.c", "pkg.a"]
    (package / "a.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import c\n")  # c -> a only; add a -> sub -> b -> c
    (package / "a.py").write_text("from pkg.sub import b\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


def type_checking_imports(body: list[ast.stmt]):
    """Import statements under ``if TYPE_CHECKING:`` anywhere in ``body``."""
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.If) and _type_checking(node.test):
            yield from (n for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
                        if isinstance(n, (ast.Import, ast.ImportFrom)))


def test_no_module_hides_an_import_of_the_package_behind_type_checking():
    """A back-edge typed only for the checker (``if TYPE_CHECKING: from tokenzip...``) is still a cycle in the design:
    the modules must not need each other's names at all (issue 25)."""
    hidden = {}
    for name, path in module_names(SRC).items():
        for node in type_checking_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if node.level or any(n.split(".")[0] == "tokenzip" for n in names):
                hidden.setdefault(name, []).append(node.lineno)
    assert hidden == {}
    sample = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tokenzip.kv import base\n"
    assert len(list(type_checking_imports(ast.parse(sample).body))) == 1  # the check sees them


REASONS = ("# lazy:", "# cycle:")


def unexplained_function_imports(source: str) -> list[int]:
    """Lines of the imports of tokenzip modules inside functions that give no reason on their line (or the line
    before): ``# lazy: ...`` (deferred for start-up time or an optional extra) or ``# cycle: ...``."""
    lines = source.splitlines()
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not getattr(node, "level", 0) and not any(n.split(".")[0] == "tokenzip" for n in names):
                continue  # a third-party package (transformers, matplotlib, ray...): lazy by nature, no note needed
            said = lines[max(node.lineno - 2, 0): node.end_lineno]
            if not any(reason in line for line in said for reason in REASONS):
                found.add(node.lineno)
    return sorted(found)


def test_every_function_level_import_of_the_package_says_why():
    """An import of a tokenzip module belongs at the top of the module, unless it must wait: for start-up time or an
    optional extra (``# lazy: keeps tokenzip.demo free of torch``) or a cycle (``# cycle: ...``), said
    on its line or the line before (issue 25: 127 such imports, none with a reason, some pointless)."""
    unexplained = {str(path.relative_to(SRC)): lines for path in sorted(SRC.rglob("*.py"))
                   if (lines := unexplained_function_imports(path.read_text(encoding="utf-8")))}
    assert unexplained == {}, "move these imports to the module's top, or say why they wait (# lazy: / # cycle:)"


def test_the_check_finds_a_function_level_import_without_a_reason():
    sample = ("import os\n"
              "def f():\n"
              "    import json\n"                                    # third-party or stdlib: no note needed
              "    from tokenzip import spec\n"                      # 4: no reason
              "    from tokenzip.kv import base  # lazy: torch\n"
              "    # cycle: pipeline imports this module\n"
              "    from tokenzip import pipeline\n"
              "    if os.sep:\n"
              "        from . import sibling\n"                      # 9: relative, no reason
              "    from tokenzip.bench import (\n"                   # 10: the reason on its last line counts
              "        runner,\n"
              "    )  # lazy: transformers\n"
              "    print(runner)\n"
              "    import tokenzip.models\n")                        # 14: no reason
    assert unexplained_function_imports(sample) == [4, 9, 14]


def load_time_imports(body: list[ast.stmt]):
    """The import statements that run when a module loads: module level and class bodies, not function bodies,
    not ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            yield from load_time_imports(node.orelse)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    yield from load_time_imports([child])


def loads(root: Path, module: str, skip: frozenset[str] = frozenset()) -> set[str]:
    """The top-level names of the outside packages that loading ``module`` imports, following the package's own
    modules (and their parent packages, which load first) except those in ``skip``."""
    modules = module_names(root)
    seen, todo, outside = {module}, [module], set()
    while todo:
        name = todo.pop()
        path = modules[name]
        targets = {name.rsplit(".", 1)[0]} if "." in name else set()
        for node in load_time_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)).body):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module if isinstance(node, ast.ImportFrom) else None
            dotted = [source] if source else [a.name for a in node.names]
            for full in dotted:
                if full.split(".")[0] != root.name:
                    outside.add(full.split(".")[0])
                    continue
                parts = full.split(".")
                targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules}
                if isinstance(node, ast.ImportFrom):
                    targets |= {f"{full}.{a.name}" for a in node.names if f"{full}.{a.name}" in modules}
        for target in sorted(targets - seen - skip):
            seen.add(target)
            todo.append(target)
    return outside


# What the ``# lazy:`` notes keep out: each module, loaded on its own, imports none of these packages. The package
# root is left out: tokenzip/__init__.py imports hooks, models and pipeline, so today ``import tokenzip`` (and with
# it ``tokenzip --help``) loads torch and transformers whatever these modules do.
KEPT_LIGHT = {
    "tokenzip.cli": {"torch", "transformers"}, "tokenzip.cli_info": {"torch", "transformers"},
    "tokenzip.demo": {"torch", "transformers"}, "tokenzip.hooks": {"torch", "transformers"},
    "tokenzip.prompt.api": {"torch", "transformers"}, "tokenzip.tokenizers.cli": {"torch", "transformers"},
    "tokenzip.serve.cli": {"torch", "transformers", "fastapi", "ray"},
    "tokenzip.serve": {"torch", "transformers", "fastapi", "ray"},
    "tokenzip.serve.app": {"torch", "transformers"},
    "tokenzip.layers.runtime": {"transformers"}, "tokenzip.models.encoders": {"transformers"},
    "tokenzip.models.vision": {"transformers"}, "tokenzip.bench.runner": {"transformers"},
    "tokenzip.bench.worker": {"transformers"}, "tokenzip.engines": {"torch", "transformers"},
}


def test_the_lazy_imports_keep_their_modules_light():
    heavy = {module: sorted(loads(SRC, module, skip=frozenset({"tokenzip"})) & packages)
             for module, packages in KEPT_LIGHT.items()}
    assert heavy == {module: [] for module in KEPT_LIGHT}
    assert {"torch", "transformers"} <= loads(SRC, "tokenzip.cli")  # through the package root, today
    assert "transformers" in loads(SRC, "tokenzip.kv.cli", skip=frozenset({"tokenzip"}))  # the check sees them
