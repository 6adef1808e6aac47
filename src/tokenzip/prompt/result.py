"""What :func:`tokenzip.prompt.compress` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Span(NamedTuple):
    """``original[start:end]`` appears verbatim in the compressed text at ``out_start``."""

    start: int
    end: int
    out_start: int


@dataclass
class PromptResult:
    """A compressed prompt.

    ``tokens_before``/``tokens_after`` are counted on the target tokenizer (the scorer's when none was
    given), without special tokens; ``ratio`` is the fraction of tokens actually removed. Every
    character of ``text`` outside the joins comes from ``kept_spans`` (offsets in the original).
    """

    text: str
    tokens_before: int
    tokens_after: int
    ratio: float
    kept_spans: list[Span] = field(default_factory=list)
    budget: int | None = None  # tokens asked for
    method: str = ""
    mode: str = "text"
    seconds: float = 0.0  # compressor wall-clock time
    notes: list[str] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Compressor throughput: input tokens per second of compression."""
        return self.tokens_before / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "text": self.text, "tokens_before": self.tokens_before, "tokens_after": self.tokens_after,
            "ratio": self.ratio, "budget": self.budget, "method": self.method, "mode": self.mode,
            "seconds": self.seconds, "notes": list(self.notes),
            "kept_spans": [list(s) for s in self.kept_spans],
        }
