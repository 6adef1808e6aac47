"""Prompt stage: compress text before any model sees it.

    import tokenzip as tz
    r = tz.prompt.compress(text, ratio=0.5, question="Who wrote it?", method="longllmlingua")
    r.text, r.tokens_before, r.tokens_after, r.ratio, r.kept_spans

Importing this package is light: torch and transformers load on the first compression.
"""

from tokenzip.prompt.api import compress
from tokenzip.prompt.result import PromptResult, Span

__all__ = ["PromptResult", "Span", "compress"]
