"""``niah_multikey``: several needles with different keys; the question asks for one (RULER's niah_multikey)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks import needles as nd
from tokenzip.bench.tasks.base import Draft
from tokenzip.bench.tasks.registry import register_task


@register_task
@dataclass
class NiahMultikey(nd.NeedleTask):
    """``keys`` needles (one target, the others distractors) at random depths; asked for the target's value."""

    name = "niah_multikey"
    description = "several needles with different keys (distractors); asked for one key's value"
    max_new_tokens = 16

    keys: int = 4

    def check_counts(self) -> None:
        nd.check_count("keys", self.keys)

    def draft(self, rng, index, length, count):
        keys, values = nd.keys_and_values(rng, self.keys, self.keys, self.value)
        needles = [nd.needle(k, v, self.value) for k, v in zip(keys, values)]
        render, unit_parts, depths = nd.layout(rng, self.haystack, self.value, needles)
        target = rng.randrange(self.keys)
        return Draft([nd.ask_one(keys[target], values[target], self.value)], render, unit_parts,
                     {"depth": round(depths[target], 3), "distractors": self.keys - 1})
