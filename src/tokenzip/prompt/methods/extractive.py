"""Extractive compression: keep whole sentences.

Sentence-level selection is the strongest simple baseline in "Characterizing Prompt Compression
Methods for Long Context Inference" (Jha et al., 2024, arXiv 2407.08892: up to 10x with little loss).
With a question, a sentence's relevance is how predictable it makes the question (the question's
mean self-information given the sentence, lower is better: LongLLMLingua's coarse criterion, arXiv
2310.06839, at sentence level); without one, sentences are ranked by their mean self-information.
Kept sentences stay in their original order; the result may fall short of the budget, never over
it, by at most about one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenzip.prompt.base import PromptJob, PromptMethod, group_sentences
from tokenzip.prompt.segment import WORD
from tokenzip.registry import register


@register
@dataclass
class Extractive(PromptMethod):
    """Keep whole sentences: the most question-relevant, or the most informative without a question."""

    name = "extractive"
    paper = "Jha et al., 2024, arXiv 2407.08892 (sentence selection); LongLLMLingua's criterion, arXiv 2310.06839"
    question_aware = True

    def prepare(self, job: PromptJob) -> None:
        group_sentences(job.pieces)

    def priority(self, job: PromptJob) -> np.ndarray:
        pieces = job.pieces
        if not job.question:
            return job.information(how="mean")
        scorer = job.scorer
        question = scorer.ids(" " + job.question.strip())
        texts = ["" for _ in range(pieces.n_units)]
        first_last = {}
        for i in np.flatnonzero((pieces.unit >= 0) & (pieces.kind == WORD)):
            u = int(pieces.unit[i])
            s, e = first_last.get(u, (pieces.start[i], pieces.end[i]))
            first_last[u] = (min(s, pieces.start[i]), max(e, pieces.end[i]))
        for u, (s, e) in first_last.items():
            texts[u] = pieces.text[s:e]
        window = scorer.window - len(question) - 2
        losses = scorer.surprisal([(scorer.ids(t)[-window:], question) for t in texts])
        return np.array([-float(x.mean()) for x in losses])
