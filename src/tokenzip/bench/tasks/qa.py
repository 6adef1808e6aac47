"""``qa``: facts planted in generated prose, asked about in other words.

Each fact has a statement and a question that paraphrases it (e.g. "Dravel was born in Morkin." ->
"Which town does Dravel come from?"), so the answer cannot be found by copying the question's words.
Names, towns and societies are invented, so the model cannot know the answers beforehand.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Draft, Question, Task, filler_render
from tokenzip.bench.tasks.haystack import Filler
from tokenzip.bench.tasks.needles import check_count
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import TokenzipError


def _fact(form: int, rng: random.Random, person: str) -> tuple[str, str, str]:
    """(statement, paraphrased question, answer) of one form of fact about an invented ``person``."""
    if form == 0:
        town = w.invented_name(rng, 3)
        return f"{person} was born in the town of {town}.", f"Which town does {person} come from?", town
    if form == 1:
        job = rng.choice(w.JOBS)
        return f"{person} earns a living as a {job}.", f"What does {person} do for work?", job
    if form == 2:
        animal, pet = rng.choice(w.ANIMALS), w.invented_name(rng, 2)
        return (f"{person} keeps a {animal} called {pet}.", f"What is the name of the {animal} that belongs to "
                f"{person}?", pet)
    if form == 3:
        org, year = rng.choice(w.ORGANISATIONS), str(rng.randint(1400, 1899))
        return (f"{person} founded the {org} of {person} in {year}.", f"In which year did {person} establish the "
                f"{org} of {person}?", year)
    sibling = w.invented_name(rng, 2)
    return f"{person} has a younger sister named {sibling}.", f"Who is the little sister of {person}?", sibling


@register_task
@dataclass
class PlantedQA(Task):
    """``facts`` facts about different invented people at random depths in generated prose; ``questions`` of
    them are asked (each answered from the same context), in words other than the statement's."""

    name = "qa"
    description = "facts planted in generated prose, asked about in other words"
    metric = "part"
    max_new_tokens = 12

    facts: int = 6
    questions: int = 1

    def __post_init__(self) -> None:
        check_count("facts", self.facts)
        check_count("questions", self.questions)
        if self.questions > self.facts:
            raise TokenzipError(f"qa: cannot ask {self.questions} questions about {self.facts} facts")

    def draft(self, rng, index, length, count):
        people: list[str] = []
        while len(people) < self.facts:
            name = w.invented_name(rng, 2)
            if name not in people:
                people.append(name)
        facts = [_fact(rng.randrange(5), rng, p) for p in people]
        depths = [rng.random() for _ in facts]
        filler = Filler("prose", rng)
        render, unit_parts = filler_render("Read the following text carefully; questions about it follow.\n",
                                           filler, [(d, f[0]) for d, f in zip(depths, facts)])
        asked = rng.sample(range(self.facts), self.questions)
        questions = [Question(facts[i][1], [facts[i][2]]) for i in asked]
        return Draft(questions, render, unit_parts, {"depths": [round(depths[i], 3) for i in asked]})

    def check(self, sample):
        # an answer (a job, a name) must not be given by another planted fact
        return all(sample.context.count(a) == 1 for q in sample.questions for a in q.answers)
