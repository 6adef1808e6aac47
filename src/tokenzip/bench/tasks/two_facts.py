"""``two_facts``: a long document whose answer needs two facts stated far apart.

One fact about an invented person sits in the first part of the document (depth ``0.05-early``, 0.25 by
default) and another about the same person in the last part (``late-0.95``, 0.75), with other people's facts
as distractors in between. ``mode=pair`` asks for both facts in one question (the answer must contain
both: RULER's string_match_all); ``mode=hop`` chains them: the early fact names a town, the late one says
what that town is known for, and the question asks what the person's home town is known for (only the
second fact's answer is scored, but it cannot be found without the first). A cache that keeps only one
end of a long context, or evicts the early part while reading the rest, loses it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Draft, Question, Task, filler_render
from tokenzip.bench.tasks.haystack import Filler
from tokenzip.bench.tasks.needles import check_count
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import TokenzipError, unknown_name

MODES = ("pair", "hop")
SPECIALTIES = ("salt", "glass", "honey", "lace", "copper", "cheese", "rope", "paper", "silk", "clocks", "wine",
               "pottery", "wool", "candles", "bells")


def _distinct_names(rng: random.Random, n: int, syllables: int) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = w.invented_name(rng, syllables)
        if name not in names:
            names.append(name)
    return names


@register_task
@dataclass
class TwoFacts(Task):
    """Two facts about one invented person, one at a depth in ``[0.05, early]`` and one in ``[late, 0.95]`` of a
    long document; ``distractors`` other people's facts between them; ``mode``: ``pair`` (ask for both) or
    ``hop`` (the second answers a question that needs the first)."""

    name = "two_facts"
    description = "a long document; the answer needs two facts far apart (pair: both asked; hop: chained)"
    metric = "all"
    max_new_tokens = 16

    mode: str = "pair"
    distractors: int = 4
    early: float = 0.25
    late: float = 0.75

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise unknown_name("two_facts mode", self.mode, MODES)
        check_count("distractors", self.distractors, low=0)
        if not 0.05 <= self.early <= self.late <= 0.95:
            raise TokenzipError(f"two_facts: depths need 0.05 <= early <= late <= 0.95, got early={self.early}, "
                                f"late={self.late}")

    def draft(self, rng, index, length, count):
        people = _distinct_names(rng, 1 + self.distractors, 2)
        towns = _distinct_names(rng, 1 + self.distractors, 3)
        person, town = people[0], towns[0]
        if self.mode == "pair":
            job = rng.choice(w.JOBS)
            first = f"{person} was born in the town of {town}."
            second = f"Many years later, {person} earns a living as a {job}."
            question = Question(f"Where was {person} born, and what does {person} do for work?", [town, job],
                                f"{person} was born in the town of")
        else:
            specialty = rng.choice(SPECIALTIES)
            first = f"{person} grew up in the town of {town}."
            second = f"The town of {town} is famous across the region for its {specialty}."
            question = Question(f"What is the town where {person} grew up famous for?", [specialty],
                                f"The town where {person} grew up is famous for its")
        inserts = [(rng.uniform(0.05, self.early), first), (rng.uniform(self.late, 0.95), second)]
        for other, other_town in zip(people[1:], towns[1:]):  # distractors: other people, other towns
            inserts.append((rng.uniform(self.early, self.late), f"{other} was born in the town of {other_town}."))
        filler = Filler("prose", rng)
        render, unit_parts = filler_render("Read the following document carefully; a question about it follows.\n",
                                           filler, inserts)
        depths = [round(inserts[0][0], 3), round(inserts[1][0], 3)]
        return Draft([question], render, unit_parts, {"depths": depths, "mode": self.mode})
