"""Haystacks: the filler text needles hide in, generated on demand and deterministic for a seed.

Four haystacks (RULER, Hsieh et al. 2024, arXiv 2404.06654, uses the first and an essay corpus; the
essays are replaced here by generated prose so nothing is downloaded):

* ``noise``: the same five plain sentences over and over ("The grass is green. ...");
* ``prose``: procedurally generated sentences about streets, markets and travellers;
* ``uuids``: one random UUID per line;
* ``numbers``: one random 7-digit number per line (needles with number values must not collide
  with them: :meth:`Task.check` rejects a sample where an answer occurs twice).
"""

from __future__ import annotations

import random

from tokenzip.bench.tasks import words as w
from tokenzip.errors import unknown_name

HAYSTACKS = ("noise", "prose", "uuids", "numbers")


def prose_sentence(rng: random.Random) -> str:
    """One sentence of generated prose."""
    p = w.PROSE
    form = rng.randrange(5)
    if form == 0:
        return (f"The {rng.choice(p['adj'])} {rng.choice(p['noun'])} {rng.choice(p['verb'])} the "
                f"{rng.choice(p['adj'])} {rng.choice(p['noun'])} {rng.choice(p['time'])}.")
    if form == 1:
        return f"{rng.choice(p['connector'])}, {rng.choice(p['plural'])} {rng.choice(p['verb_plural'])} " \
               f"by the {rng.choice(p['noun'])} {rng.choice(p['time'])}."
    if form == 2:
        return (f"Nobody remembers why the {rng.choice(p['noun'])} was {rng.choice(p['participle'])}, "
                f"but {rng.choice(p['clause'])}.")
    if form == 3:
        return (f"{rng.choice(p['time']).capitalize()}, the {rng.choice(p['noun'])} looks "
                f"{rng.choice(p['adj'])} and {rng.choice(p['adj'])}.")
    return (f"Some {rng.choice(p['plural'])} say the {rng.choice(p['noun'])} {rng.choice(p['verb'])} the "
            f"{rng.choice(p['noun'])}, and {rng.choice(p['clause'])}.")


class Filler:
    """An endless, deterministic sequence of filler units (sentences or lines) of one haystack."""

    def __init__(self, haystack: str, rng: random.Random) -> None:
        if haystack not in HAYSTACKS:
            raise unknown_name("haystack", haystack, HAYSTACKS)
        self.haystack = haystack
        self.rng = random.Random(rng.getrandbits(64))
        self.units: list[str] = []

    @property
    def sep(self) -> str:
        """How units are joined: sentences by a space, list items by a newline."""
        return "\n" if self.haystack in ("uuids", "numbers") else " "

    def _pieces(self, unit: str) -> tuple[str, list[str]]:
        """How a unit can be cut: words of a sentence, groups of a UUID, digits of a number."""
        if self.haystack == "uuids":
            return "-", unit.split("-")
        if self.haystack == "numbers":
            return "", list(unit)
        return " ", unit.split(" ")

    def parts(self, i: int) -> int:
        """Number of pieces filler unit ``i`` can be cut into."""
        return len(self._pieces(self(i))[1])

    def prefix(self, i: int, k: int) -> str:
        """The first ``k`` pieces of unit ``i`` (to hit a length exactly)."""
        sep, pieces = self._pieces(self(i))
        return sep.join(pieces[:k])

    def _next(self) -> str:
        if self.haystack == "noise":
            return w.NOISE_SENTENCES[len(self.units) % len(w.NOISE_SENTENCES)]
        if self.haystack == "prose":
            return prose_sentence(self.rng)
        if self.haystack == "uuids":
            return w.uuid(self.rng)
        return w.number(self.rng)

    def __call__(self, i: int) -> str:
        while len(self.units) <= i:
            self.units.append(self._next())
        return self.units[i]
