"""``perplexity``: negative log-likelihood of a text stream whose beginning went through compression.

The context (``length`` tokens of generated prose) is prefilled and compressed; the next
``continuation`` tokens are then scored one position at a time from the compressed state (teacher
forcing), and the score is their mean negative log-likelihood in nats (lower is better).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks.base import Draft, Task, filler_render, fit
from tokenzip.bench.tasks.haystack import HAYSTACKS, Filler
from tokenzip.bench.tasks.needles import check_count
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import unknown_name


@register_task
@dataclass
class Perplexity(Task):
    """A ``haystack`` text of the requested length, then ``continuation`` more tokens of the same text to score."""

    name = "perplexity"
    description = "NLL of the continuation of a text stream after its beginning was compressed (kv, layers)"
    kind = "perplexity"
    metric = "nll"

    continuation: int = 128
    haystack: str = "prose"

    def __post_init__(self) -> None:
        check_count("continuation", self.continuation, low=8)
        if self.haystack not in HAYSTACKS:
            raise unknown_name("haystack", self.haystack, HAYSTACKS)

    def draft(self, rng, index, length, count):
        filler = Filler(self.haystack, rng)
        render, unit_parts = filler_render("", filler, [], sep=filler.sep)
        tail = Filler(self.haystack, rng)
        tail_render, tail_parts = filler_render(filler.sep, tail, [], sep=tail.sep)
        continuation = fit(count, self.continuation, tail_render, tail_parts, "perplexity continuation",
                           tolerance=None)
        return Draft([], render, unit_parts, {"continuation_tokens": count(continuation)},
                     continuation=continuation)

    def check(self, sample):
        return True
