"""``fwe``: frequent words extraction: coded words drawn from a Zipf law; name the top three (RULER)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Draft, Question, Task
from tokenzip.bench.tasks.needles import check_count, distinct
from tokenzip.bench.tasks.registry import register_task
from tokenzip.errors import TokenzipError

INSTRUCTION = ("Read the following coded text and track the frequency of each coded word. Find the three most "
               "frequently appeared coded words.\n")


@register_task
@dataclass
class FrequentWords(Task):
    """Words drawn from ``vocabulary`` coded words with P(rank r) proportional to r^-alpha; a right answer
    names the ``top`` most frequent ones (which must be strictly ranked in the generated text)."""

    name = "fwe"
    description = "frequent words extraction: the most frequent coded words of a Zipf-distributed text"
    max_new_tokens = 24

    alpha: float = 2.0
    top: int = 3
    vocabulary: int = 500

    def __post_init__(self) -> None:
        check_count("top", self.top)
        check_count("vocabulary", self.vocabulary, low=self.top + 1)
        if not self.alpha > 0:
            raise TokenzipError(f"fwe: alpha must be > 0, got {self.alpha}")

    def draft(self, rng, index, length, count):
        vocab = distinct(rng, w.coded_word, self.vocabulary)
        weights = [1.0 / (r + 1) ** self.alpha for r in range(self.vocabulary)]
        stream: list[str] = []
        draw = random.Random(rng.getrandbits(64))

        def render(n: int, _words: int) -> str:
            while len(stream) < n:
                stream.extend(draw.choices(vocab, weights, k=256))
            return INSTRUCTION + " ".join(stream[:n]) + "\n"

        question = Question(f"What are the {self.top} most frequently appeared words in the above coded text?",
                            vocab[: self.top],
                            f"According to the coded text above, the {self.top} most frequently appeared words are:")
        return Draft([question], render, lambda i: 0, {"alpha": self.alpha})

    def check(self, sample):
        counts = Counter(sample.context.splitlines()[1].split())
        ranked = [c for _, c in counts.most_common()] + [0]
        answers = sample.questions[0].answers
        return sorted((counts[a] for a in answers), reverse=True) == ranked[: self.top] and \
            ranked[self.top - 1] > ranked[self.top]
