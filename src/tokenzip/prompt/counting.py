"""Token counts on the target tokenizer: a tokenizer object, a model name or a tokenizer path."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenzip.errors import TokenzipError


class TokenCounter:
    """``counter(text)`` is the number of tokens ``text`` becomes, without special tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is not None and hasattr(backend, "encode"):
            self._count: Callable[[str], int] = lambda t: len(backend.encode(t, add_special_tokens=False).ids)
        elif hasattr(tokenizer, "encode"):
            def _encode(t: str) -> int:
                try:
                    return len(tokenizer.encode(t, add_special_tokens=False))
                except TypeError:  # tiktoken-style encoders
                    return len(tokenizer.encode(t))
            self._count = _encode
        elif callable(tokenizer):
            self._count = lambda t: len(tokenizer(t))
        else:
            raise TokenzipError(
                "target_tokenizer must be a tokenizer (with .encode), a model name or a tokenizer path; "
                f"got {tokenizer!r}"
            )

    def __call__(self, text: str) -> int:
        return self._count(text) if text else 0


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of a short model name (without loading the weights), a local path or an HF id."""
    from transformers import AutoTokenizer

    from tokenzip.models.catalog import MODELS

    if name_or_path == "gemma-3-270m":
        return AutoTokenizer.from_pretrained(str(_gemma_tokenizer_dir()))
    if name_or_path in MODELS:
        import tokenzip as tz

        return tz.load_model(name_or_path)[1]
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise TokenzipError(
            f"could not load a tokenizer from {name_or_path!r}: {exc}. Pass a tokenizer object, a short model name "
            "from `tokenzip models`, or a local directory holding tokenizer files."
        ) from exc


def _gemma_tokenizer_dir() -> Path:
    """The cached Gemma directory, checking only the tokenizer files against the manifest (hashing the
    1 GB weights is for loading the model); anything amiss goes through the full verified build."""
    from tokenzip.models.gemma import MANIFEST, _sha256, ensure_cache, gemma_dir

    directory = gemma_dir()
    try:
        entries = json.loads((directory / MANIFEST).read_text())["files"]
        if all(_sha256(directory / n) == entries[n]["sha256"] for n in ("tokenizer.json", "tokenizer_config.json")):
            return directory
    except (OSError, ValueError, KeyError):
        pass
    return ensure_cache()


def resolve_counter(target_tokenizer: Any, scorer: Any) -> TokenCounter:
    """The target tokenizer's counter; the scorer's tokenizer when no target is given."""
    if target_tokenizer is None:
        from tokenzip.prompt.scorer import CausalScorer

        if isinstance(scorer, CausalScorer):
            target_tokenizer = scorer.tokenizer
        elif isinstance(scorer, tuple) and len(scorer) == 2:
            target_tokenizer = scorer[1]
        else:
            target_tokenizer = scorer
    if isinstance(target_tokenizer, str):
        target_tokenizer = load_tokenizer(target_tokenizer)
    return TokenCounter(target_tokenizer)
