"""tokenzip.ops stays pure (tensors in, tensors out, like ToMe's ``merge.py``): its modules import only torch, numpy,
math, the standard library, other ops modules and ``tokenzip.errors``, never the stages, the models, the bench or
transformers. Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tokenzip.ops

OPS = Path(tokenzip.ops.__file__).parent
ALLOWED_THIRD_PARTY = {"torch", "numpy"}
ALLOWED_TOKENZIP = {"tokenzip.ops", "tokenzip.errors"}


def imported_modules(path: Path, package: str) -> list[str]:
    """Every module ``path`` imports, anywhere in the file, as absolute dotted names (relative imports resolved
    against ``package``; ``from pkg import name`` yields ``pkg.name``, which may be a submodule)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names += [f"{source}.{alias.name}" for alias in node.names]
    return names


def allowed(name: str) -> bool:
    top = name.split(".")[0]
    if top == "tokenzip":
        return any(name == ok or name.startswith(ok + ".") for ok in ALLOWED_TOKENZIP)
    return top in ALLOWED_THIRD_PARTY or top == "__future__" or top in sys.stdlib_module_names


def impure_imports(root: Path, package: str) -> dict[str, list[str]]:
    """Module file name -> the imports it is not allowed."""
    found = {}
    for path in sorted(root.glob("*.py")):
        bad = [name for name in imported_modules(path, package) if not allowed(name)]
        if bad:
            found[path.name] = bad
    return found


def test_ops_modules_import_only_torch_numpy_stdlib_ops_and_errors():
    modules = {path.stem for path in OPS.glob("*.py")}
    assert {"topk", "merging", "quantize", "attention", "geometry", "rope", "information", "spans",
            "selection"} <= modules
    assert impure_imports(OPS, "tokenzip.ops") == {}


def test_ops_has_no_subpackages_the_check_would_miss():
    assert [p.name for p in OPS.iterdir() if p.is_dir() and p.name != "__pycache__"] == []


def test_the_check_catches_stage_model_and_transformers_imports(tmp_path):
    (tmp_path / "good.py").write_text(
        "import math\nimport torch.nn.functional as F\nfrom collections import OrderedDict\n"
        "from tokenzip.errors import TokenzipError\nfrom tokenzip.ops.topk import keep_topk\nfrom . import merging\n"
    )
    (tmp_path / "bad.py").write_text(
        "import transformers\nfrom tokenzip.kv.base import LayerContext\n"
        "def f():\n    from tokenzip import layers\n    from ..models import catalog\n    import tokenzip.bench\n"
    )
    assert impure_imports(tmp_path, "tokenzip.ops") == {
        "bad.py": ["transformers", "tokenzip.kv.base.LayerContext", "tokenzip.layers", "tokenzip.models.catalog",
                   "tokenzip.bench"],
    }
