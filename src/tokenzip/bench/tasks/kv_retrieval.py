"""``kv_retrieval``: find one key's value in a long JSON object of UUID pairs, with the pair's position swept.

After Liu et al. 2023, "Lost in the Middle: How Language Models Use Long Contexts" (arXiv 2307.03172):
the asked pair sits at relative depth 0, 1/(positions-1), ..., 1 for samples 0, 1, 2, ..., so a
sweep shows how retrieval depends on where the answer is.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Draft, Question, Task, with_inserts
from tokenzip.bench.tasks.needles import check_count
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import TokenzipError

INSTRUCTION = "Extract the value corresponding to the specified key in the JSON object below.\n\nJSON data:\n{"


def pair(key: str, value: str) -> str:
    return f'"{key}": "{value}"'




@register_task
@dataclass
class KVRetrieval(Task):
    """A JSON object of random UUID key-value pairs; asked for one key's value. Sample i puts the asked pair at
    depth ``(i % positions) / (positions - 1)``; ``depth`` in [0, 1] fixes it instead."""

    name = "kv_retrieval"
    description = "JSON key-value retrieval with the answer's position swept (lost in the middle)"
    max_new_tokens = 40

    positions: int = 5
    depth: float = -1.0

    def __post_init__(self) -> None:
        check_count("positions", self.positions, low=2)
        if self.depth != -1.0 and not 0.0 <= self.depth <= 1.0:
            raise TokenzipError(f"kv_retrieval: depth must be in [0, 1] (or -1 to sweep), got {self.depth}")

    def draft(self, rng, index, length, count):
        depth = self.depth if self.depth >= 0 else (index % self.positions) / (self.positions - 1)
        key, value = w.uuid(rng), w.uuid(rng)
        pairs: list[tuple[str, str]] = []

        def unit(i: int) -> tuple[str, str]:
            while len(pairs) <= i:
                pairs.append((w.uuid(rng), w.uuid(rng)))
            return pairs[i]

        def render(n: int, chars: int) -> str:
            body = [pair(*unit(i)) for i in range(n)]
            if chars:  # a last, shorter pair to hit the length exactly
                k, v = unit(n)
                body.append(pair(k[:chars], v[:chars]))
            return INSTRUCTION + "\n" + ",\n".join(with_inserts(body, [(depth, pair(key, value))])) + "\n}"

        question = Question(f'What is the value associated with the key "{key}" in the JSON object above?',
                            [value], f'The value associated with the key "{key}" is:')
        return Draft([question], render, lambda i: 36, {"depth": round(depth, 3)})

    def check(self, sample):
        key = sample.questions[0].text.split('"')[1]
        return super().check(sample) and sample.context.count(key) == 1
