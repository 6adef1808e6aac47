"""Extractive compression: keep whole sentences.

Sentence-level selection is the strongest simple baseline in "Characterizing Prompt Compression
Methods for Long Context Inference" (Jha et al., 2024, arXiv 2407.08892: up to 10x with little loss).
With a question, a sentence's relevance is how predictable it makes the question (the question's
mean self-information given the sentence, lower is better: LongLLMLingua's coarse criterion, arXiv
2310.06839, at sentence level); without one, sentences are ranked by their mean self-information.

Two choices keep the selected text readable by a small model:

- Sentences that hold a protected span (a number, a URL, a ``keep`` pattern) are kept before any
  other (``protected_first``): the span can never be removed, and a number left without its
  sentence ("1871.") reads as an answer to any question about a year. Only when those sentences
  alone exceed the budget do their other words go.
- With a question, the most relevant sentence is moved to the end, right before the question
  (``reorder="best-last"``). LongLLMLingua reorders documents by relevance against "lost in the
  middle" (Liu et al., 2023, arXiv 2307.03172: models use the start and the end of their context
  best); for a prompt that ends with the question, the end is the nearest place. Only in ``text``
  mode (JSON, Markdown and code keep their structure); ``reorder="none"`` keeps the original order.

Kept sentences otherwise stay in their original order; the result may fall short of the budget,
never over it, by at most about one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenzip.method import register
from tokenzip.prompt.base import PromptJob, PromptMethod, documents, group_sentences, move_to_end
from tokenzip.prompt.segment import FIXED, WORD

REORDERS = ("best-last", "none")
PROTECTED_BONUS = 1e6  # above any relevance: sentences holding protected spans are kept first


@register
@dataclass
class Extractive(PromptMethod):
    """Keep whole sentences: the most question-relevant, or the most informative without a question."""

    name = "extractive"
    paper = "Jha et al., 2024, arXiv 2407.08892 (sentence selection); LongLLMLingua's criterion, arXiv 2310.06839"
    question_aware = True
    unit = "sentence"

    choices = {"reorder": REORDERS}

    reorder: str = "best-last"
    protected_first: bool = True

    def prepare(self, job: PromptJob) -> None:
        pieces = job.pieces
        protected = (pieces.category == WORD) & (pieces.unit == FIXED)
        sentence = group_sentences(pieces)
        holds_protected = np.isin(sentence, sentence[protected]) & (pieces.unit >= 0)
        job.state["holders"] = np.unique(pieces.unit[holds_protected])

    def priority(self, job: PromptJob) -> np.ndarray:
        relevance = job.state["relevance"] = self.relevance(job)
        priority = relevance.copy()
        if self.protected_first:
            priority[job.state["holders"]] += PROTECTED_BONUS
        return priority

    def relevance(self, job: PromptJob) -> np.ndarray:
        """One number per sentence, higher is better: minus the question's mean self-information given
        the sentence, or the sentence's own mean self-information without a question."""
        pieces = job.pieces
        if not job.question:
            return job.information(how="mean")
        scorer = job.scorer
        question = scorer.ids(" " + job.question.strip())
        texts = ["" for _ in range(pieces.n_units)]
        first_last = {}
        for i in np.flatnonzero((pieces.unit >= 0) & (pieces.category == WORD)):
            u = int(pieces.unit[i])
            s, e = first_last.get(u, (pieces.start[i], pieces.end[i]))
            first_last[u] = (min(s, pieces.start[i]), max(e, pieces.end[i]))
        for u, (s, e) in first_last.items():
            texts[u] = pieces.text[s:e]
        window = scorer.window - len(question) - 2
        distinct, index = np.unique(np.array(texts, dtype=object), return_inverse=True)  # a repeated sentence once
        losses = scorer.surprisal([(scorer.ids(t)[-window:], question) for t in distinct])
        return np.array([-float(x.mean()) for x in losses])[index.reshape(-1)]

    def order(self, job: PromptJob) -> list[np.ndarray] | None:
        """The text in its order, then the most relevant sentence (with a question and ``best-last``)."""
        if self.reorder == "none" or not job.question or job.mode != "text" or job.pieces.n_units == 0:
            return None
        best = int(np.argmax(job.state["relevance"]))  # units are sentences, in text order
        sentences = documents(job.pieces, levels=("sentence",))
        top = next(i for i, s in enumerate(sentences) if (job.pieces.unit[s] == best).any())
        return move_to_end(sentences, top)
