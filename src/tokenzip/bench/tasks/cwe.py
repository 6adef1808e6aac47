"""``cwe``: common words extraction: name the most frequent words of a long numbered list (RULER)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Draft, Question, Task
from tokenzip.bench.tasks.needles import check_count
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import TokenzipError

INSTRUCTION = ("Below is a numbered list of words. In these words, some appear more often than others. "
               "Memorize the ones that appear most often.\n")


def _word(rng: random.Random) -> str:
    return w.invented_name(rng, rng.choice((2, 3))).lower()


@register_task
@dataclass
class CommonWords(Task):
    """``common`` words appear ``frequency`` times each (0: chosen from the length, 4 to 30), every other
    word at most ``rare`` times; the list grows with the context. A right answer names the common words."""

    name = "cwe"
    description = "common words extraction: the most frequent words of a long numbered list"
    max_new_tokens = 64

    common: int = 10
    frequency: int = 0
    rare: int = 3

    def __post_init__(self) -> None:
        check_count("common", self.common)
        check_count("rare", self.rare)
        if self.frequency and self.frequency <= self.rare:
            raise TokenzipError(f"cwe: frequency ({self.frequency}) must exceed rare ({self.rare})")
        self.max_new_tokens = 6 * self.common + 8

    def draft(self, rng, index, length, count):
        common: list[str] = []
        while len(common) < self.common:  # no word may contain another (answers are matched as substrings)
            word = _word(rng)
            if not any(word in c or c in word for c in common):
                common.append(word)
        per_entry = count("\n".join(f"{i + 100}. {_word(rng)}" for i in range(50))) / 50
        frequency = self.frequency or max(self.rare + 1, min(30, int(length / per_entry / (2.5 * self.common))))
        pool: list[str] = []
        shuffle_seed = rng.getrandbits(64)

        def rare_entries(n: int) -> list[str]:
            while len(pool) * self.rare < n:
                word = _word(rng)
                if word not in pool and not any(word in c or c in word for c in common):
                    pool.append(word)
            return [pool[i // self.rare] for i in range(n)]

        def render(n: int, _words: int) -> str:
            entries = common * frequency + rare_entries(n)
            random.Random(shuffle_seed + n).shuffle(entries)
            return INSTRUCTION + "\n".join(f"{i + 1}. {e}" for i, e in enumerate(entries)) + "\n"

        question = Question(f"What are the {self.common} most common words in the above list?", common,
                            f"The top {self.common} words that appear most often in the list are:")
        return Draft([question], render, lambda i: 0, {"frequency": frequency, "rare": self.rare})

    def check(self, sample):
        counts = Counter(line.split(". ", 1)[1] for line in sample.context.splitlines()[1:] if ". " in line)
        answers = sample.questions[0].answers
        rest = [c for word, c in counts.items() if word not in answers]
        return min(counts[a] for a in answers) > max(rest, default=0)
