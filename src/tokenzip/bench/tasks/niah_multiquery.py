"""``niah_multiquery``: several needles; one question asks for every key's value (RULER)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks import needles as nd
from tokenzip.bench.tasks.base import Draft
from tokenzip.bench.tasks.registry import register_task


@register_task
@dataclass
class NiahMultiquery(nd.NeedleTask):
    """``keys`` needles with different keys at random depths; a right answer names all their values."""

    name = "niah_multiquery"
    description = "several needles with different keys; asked for all their values at once"
    max_new_tokens = 48

    keys: int = 4

    def check_counts(self) -> None:
        nd.check_count("keys", self.keys)

    def uuid_tokens(self) -> int:
        return 40 * self.keys

    def draft(self, rng, index, length, count):
        keys, values = nd.keys_and_values(rng, self.keys, self.keys, self.value)
        needles = [nd.needle(k, v, self.value) for k, v in zip(keys, values)]
        render, unit_parts, depths = nd.layout(rng, self.haystack, self.value, needles)
        return Draft([nd.ask_all(keys, values, self.value)], render, unit_parts,
                     {"depths": [round(d, 3) for d in depths]})
