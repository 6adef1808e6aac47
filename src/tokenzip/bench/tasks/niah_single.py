"""``niah_single``: one needle in a haystack, one question about it (RULER's niah_single)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks import needles as nd
from tokenzip.bench.tasks.base import Draft
from tokenzip.bench.tasks.registry import register_task


@register_task
@dataclass
class NiahSingle(nd.NeedleTask):
    """One key-value needle at a random depth; the question names the key. ``haystack``: noise, prose,
    uuids or numbers; ``value``: number, uuid or word."""

    name = "niah_single"
    description = "one needle (key -> value) in a haystack; asked for the value"
    max_new_tokens = 16

    haystack: str = "noise"

    def draft(self, rng, index, length, count):
        (key,), (value,) = nd.keys_and_values(rng, 1, 1, self.value)
        render, unit_parts, depths = nd.layout(rng, self.haystack, self.value, [nd.needle(key, value, self.value)])
        return Draft([nd.ask_one(key, value, self.value)], render, unit_parts, {"depth": round(depths[0], 3)})
