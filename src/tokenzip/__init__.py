"""tokenzip: cut the tokens a transformer processes, and measure what that saves and costs.

    import tokenzip as tz
    model, tok = tz.load_model("gemma-3-270m")
    with tz.compress(model, tz.get_method("snapkv", ratio=0.5)):
        out = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=32)
"""

from __future__ import annotations

import importlib
from typing import Any

from tokenzip.errors import MissingDependencyError, TokenzipError
from tokenzip.hooks import compress
from tokenzip.method import get_method, methods
from tokenzip.models import list_models, load_model
from tokenzip.pipeline import Pipeline, pipeline

__version__ = "0.1.0"

__all__ = [
    "MissingDependencyError",
    "Pipeline",
    "TokenzipError",
    "bench",
    "compress",
    "engines",
    "get_method",
    "kv",
    "layers",
    "list_models",
    "load_model",
    "methods",
    "pipeline",
    "prompt",
    "tokenizers",
]

_SUBPACKAGES = ("bench", "engines", "kv", "layers", "prompt", "tokenizers", "testing")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tokenzip.{name}")
    raise AttributeError(f"module 'tokenzip' has no attribute {name!r}")
