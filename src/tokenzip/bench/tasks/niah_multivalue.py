"""``niah_multivalue``: one key with several values; the question asks for all of them (RULER)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks import needles as nd
from tokenzip.bench.tasks.base import Draft
from tokenzip.bench.tasks.registry import register_task


@register_task
@dataclass
class NiahMultivalue(nd.NeedleTask):
    """``values`` needles sharing one key at random depths; a right answer names every value."""

    name = "niah_multivalue"
    description = "one key with several values hidden apart; asked for all of them"
    max_new_tokens = 48

    values: int = 4

    def check_counts(self) -> None:
        nd.check_count("values", self.values)

    def uuid_tokens(self) -> int:
        return 40 * self.values

    def draft(self, rng, index, length, count):
        (key,), values = nd.keys_and_values(rng, 1, self.values, self.value)
        render, unit_parts, depths = nd.layout(rng, self.haystack, self.value,
                                               [nd.needle(key, v, self.value) for v in values])
        return Draft([nd.ask_all([key], values, self.value)], render, unit_parts,
                     {"depths": [round(d, 3) for d in depths]})
