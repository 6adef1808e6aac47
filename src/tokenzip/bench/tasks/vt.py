"""``vt``: variable tracking, a multi-hop chain of assignments hidden in noise (RULER)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Draft, Question, Task, filler_render
from tokenzip.bench.tasks.haystack import HAYSTACKS, Filler
from tokenzip.bench.tasks.needles import check_count, distinct
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import unknown_name


@register_task
@dataclass
class VariableTracking(Task):
    """``chains`` chains of ``hops`` assignments (``VAR B = VAR A``) from a 5-digit value; the first chain
    is asked about and a right answer names all its variables. The other chains are distractors."""

    name = "vt"
    description = "variable tracking: follow a chain of assignments (multi-hop); name every variable"
    max_new_tokens = 32

    hops: int = 4
    chains: int = 1
    haystack: str = "noise"

    def __post_init__(self) -> None:
        check_count("hops", self.hops)
        check_count("chains", self.chains)
        if self.haystack not in HAYSTACKS:
            raise unknown_name("haystack", self.haystack, HAYSTACKS)
        self.max_new_tokens = 8 * (self.hops + 1)

    def draft(self, rng, index, length, count):
        names = distinct(rng, w.variable_name, self.chains * (self.hops + 1))
        values = distinct(rng, lambda r: w.number(r, 5), self.chains)
        statements: list[tuple[float, str]] = []
        for c in range(self.chains):
            chain = names[c * (self.hops + 1):(c + 1) * (self.hops + 1)]
            depths = sorted(rng.random() for _ in chain)
            lines = [f"VAR {chain[0]} = {values[c]}."] + [f"VAR {b} = VAR {a}." for a, b in zip(chain, chain[1:])]
            statements += list(zip(depths, lines))
        filler = Filler(self.haystack, rng)
        render, unit_parts = filler_render(
            "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n",
            filler, statements, sep=filler.sep)
        asked = names[: self.hops + 1]
        question = Question(
            f"Find all variables that are assigned the value {values[0]} in the text above.", asked,
            f"According to the chain(s) of variable assignment in the text above, {len(asked)} variables are "
            f"assigned the value {values[0]}, they are:")
        return Draft([question], render, unit_parts, {"hops": self.hops, "chains": self.chains})

    def check(self, sample):
        question = sample.questions[0]
        value = question.text.split("the value ")[1].split(" ")[0]
        return sample.context.count(value) == 1 and all(
            sample.context.count(f"VAR {v} =") == 1 for v in question.answers)
