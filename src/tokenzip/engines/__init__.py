"""Engines: the runtimes that answer questions from a compressed context, behind one protocol
(:class:`tokenzip.engines.base.Engine`): ``torch`` (Hugging Face transformers, :mod:`tokenzip.kv`) and ``llamacpp``
(llama.cpp through llama-cpp-python, :mod:`tokenzip.engines.llamacpp`). :func:`load_engine` builds one by name;
:func:`tokenzip.engines.answer.answer` answers questions about a context through any of them.
"""

from __future__ import annotations

from typing import Any

from tokenzip.engines.base import Compressed, Engine, Prefilled
from tokenzip.errors import unknown_name

ENGINES = ("torch", "llamacpp")  # the engines' names, for every option that picks one (CLI, bench, server)

__all__ = ["ENGINES", "Compressed", "Engine", "Prefilled", "check_engine", "load_engine"]


def load_engine(name: str, model: str = "gemma-3-270m", **options: Any) -> Engine:
    """The engine ``name`` on ``model`` (a short name, HF id or path for ``torch``; a short name with a packaged GGUF
    or a ``.gguf`` path for ``llamacpp``). ``options`` go to the engine (``n_ctx=``, ``threads=`` for llama.cpp;
    ``dtype=``, ``device=`` for torch)."""
    if check_engine(name) == "torch":
        from tokenzip.engines.torch import TorchEngine  # lazy: tokenzip.engines' names load no torch

        return TorchEngine.load(model, **options)
    from tokenzip.engines.llamacpp.engine import LlamaCppEngine  # lazy: tokenzip.engines' names load no torch
    from tokenzip.engines.llamacpp.gguf import gguf_path  # lazy: tokenzip.engines' names load no torch

    return LlamaCppEngine(gguf_path(model), **options)


def check_engine(name: str) -> str:
    """``name`` if it is an engine, else an error listing them."""
    if name not in ENGINES:
        raise unknown_name("engine", name, ENGINES)
    return name
