"""``embedding``: a corpus of passages for encoders; scored by embedding fidelity.

Each sample is a corpus of ``corpus`` passages of about ``length`` tokens (generated prose). The
compressed encoder's embedding of each passage is compared with the uncompressed one: the score is
the mean cosine similarity, and ``neighbours`` reports how many of each passage's top-10 nearest
passages (by the uncompressed embeddings) are still its top-10 (see ``tokenzip.bench.scoring``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks.base import Draft, Task, filler_render, fit
from tokenzip.bench.tasks.haystack import Filler
from tokenzip.bench.tasks.needles import check_count
from tokenzip.bench.tasks.registry import register_task


@register_task
@dataclass
class EmbeddingCorpus(Task):
    """``corpus`` passages of the requested length for an encoder (layers stage)."""

    name = "embedding"
    description = "embedding fidelity of an encoder over a corpus (cosine, top-10 neighbour agreement)"
    kind = "embedding"
    metric = "cosine"

    corpus: int = 64

    def __post_init__(self) -> None:
        check_count("corpus", self.corpus, low=11)

    def draft(self, rng, index, length, count):
        texts = []
        for _ in range(self.corpus):
            filler = Filler("prose", rng)
            render, unit_parts = filler_render("", filler, [])
            texts.append(fit(count, length, render, unit_parts, "embedding passage", tolerance=None))
        return Draft([], lambda n, k: "", lambda i: 0, {"passages": self.corpus}, texts=texts)

    def check(self, sample):
        return True
