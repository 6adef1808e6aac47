"""``qa_f1``: generated answers scored by token F1, LongBench's metric for its QA tasks.

LongBench (Bai et al. 2023, arXiv 2308.14508; ``qa_f1_score`` in its ``metrics.py``, after SQuAD's
evaluation script) normalises the prediction and each reference answer (lower case, punctuation removed,
the articles a/an/the removed, whitespace collapsed), splits them into words and takes the F1 of the
shared words (a multiset: a word counts as often as both sides have it); a question's score is the best
F1 over its references. Unlike string match it charges for extra words: "Morkin" against "Morkin" is 1.0,
"He was born in Morkin" is 1/3. Scores are in [0, 1], shown in %.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from tokenzip.bench.kinds.base import TaskKind, per_question, register_kind

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def answer_words(text: str) -> list[str]:
    """``text`` normalised as LongBench and SQuAD do, split into words."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best F1 of ``prediction``'s normalised words against those of one of ``answers`` (0.0 for none)."""
    predicted = Counter(answer_words(prediction))
    best = 0.0
    for answer in answers:
        reference = Counter(answer_words(answer))
        shared = sum((predicted & reference).values())
        if shared:
            precision, recall = shared / sum(predicted.values()), shared / sum(reference.values())
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


QA_F1 = register_kind(TaskKind(
    name="qa_f1", header="score (%, token F1)",
    score=per_question(lambda sample, prediction, answers: token_f1(prediction, answers)),
    scale=100.0, retention=True, order=0, metrics=("f1",)))
