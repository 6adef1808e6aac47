"""Token counts on the target tokenizer: a tokenizer object, a model name or a tokenizer path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.models.loading import load_tokenizer
from tokenzip.prompt.scorer import CausalScorer


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


def resolve_counter(target_tokenizer: Any, scorer: Any) -> TokenCounter:
    """The target tokenizer's counter; the scorer's tokenizer when no target is given."""
    if target_tokenizer is None:
        if isinstance(scorer, CausalScorer):
            target_tokenizer = scorer.tokenizer
        elif isinstance(scorer, tuple) and len(scorer) == 2:
            target_tokenizer = scorer[1]
        else:
            target_tokenizer = scorer
    if isinstance(target_tokenizer, str):
        target_tokenizer = load_tokenizer(target_tokenizer)
    return TokenCounter(target_tokenizer)
