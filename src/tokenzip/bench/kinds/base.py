"""The declared task kind and its registry (the kinds themselves are the other files of this package)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenzip.registry import Registry

ANSWERS, NLL, EMBEDDINGS = "answers", "nll", "embeddings"  # what a stage adapter measures on a sample
RATIO, DIFFERENCE = "ratio", "difference"  # how a method's mean score is set against the uncompressed one's

Scorer = Callable[[Any, dict[str, Any]], dict[str, Any]]


def mean(scores: Sequence[float]) -> float:
    """The arithmetic mean, every kind's aggregation unless it declares another."""
    return sum(scores) / len(scores)


@dataclass(frozen=True)
class TaskKind:
    """What the samples of a kind measure and how their scores are read.

    ``measures``: what the stage adapters produce: ``answers`` (generated answers to the questions), ``nll``
    (the continuation's negative log-likelihood) or ``embeddings`` (a corpus's embeddings; no context).
    ``score(sample, measurement)``: the row fields it sets, ``score`` (one number per row) last.
    ``scale``: display factor of the mean score (100: scores in [0, 1] shown in %, to one decimal).
    ``higher_is_better``: the direction of the score (plots and frontiers).
    ``vs_none``: ``ratio`` (the mean as % of the uncompressed model's on the same samples) or ``difference``
    (the mean minus the uncompressed model's).
    ``retention``: whether the mean over the samples the uncompressed model got fully right (score >= 1) means
    something. ``columns``: further row fields averaged in the summary. ``header``: the summary's heading.
    ``order``: summary tables are listed by it (then in the order the rows name the kinds).
    ``metrics``: the samples' ``metric`` values this kind scores (a tasks file's ``metric`` picks the kind).
    ``aggregation``: how the row scores of a group combine into its summary score (and into the means set
    against the uncompressed model's), default the mean.

    ``TaskKind(name)`` alone is a kind the report knows nothing about (or a mix of kinds): plain mean scores.
    """

    name: str
    header: str = "score"
    measures: str = ANSWERS
    score: Scorer | None = None
    scale: float = 1.0
    higher_is_better: bool = True
    vs_none: str = RATIO
    retention: bool = False
    columns: tuple[str, ...] = ()
    order: int = 1
    metrics: tuple[str, ...] = ()
    aggregation: Callable[[Sequence[float]], float] = mean

    @property
    def percent(self) -> bool:
        """Whether scores are fractions shown in % (rounded to one decimal in tables)."""
        return self.scale == 100.0


KINDS: Registry[TaskKind] = Registry("task kind", TaskKind, ("tokenzip.bench.kinds",))


def register_kind(kind: TaskKind) -> TaskKind:
    """Make ``kind`` known by its name (a kind's file calls this once)."""
    if kind.score is None:
        raise TypeError(f"task kind {kind.name!r} needs a score function")
    return KINDS.add(kind.name, kind)


def get_kind(name: str) -> TaskKind:
    """The registered kind called ``name``."""
    return KINDS.get_or_raise(name)


def answer_metrics() -> dict[str, TaskKind]:
    """The kind of answered questions that scores each sample ``metric`` (``all``, ``part``, ``f1`` ...)."""
    return {metric: kind for kind in KINDS.values() if kind.measures == ANSWERS for metric in kind.metrics}


def kind_of(names: Sequence[str]) -> TaskKind:
    """The kind of rows whose ``task_kind`` values are ``names``: the registered kind when they name one,
    else a plain :class:`TaskKind` (a mix of kinds, or one this version does not know)."""
    distinct = set(names)
    name = distinct.pop() if len(distinct) == 1 else "mixed"
    return KINDS.get(name, TaskKind(name))


def per_question(score_answer: Callable[[Any, str, Sequence[str]], float]) -> Scorer:
    """A scorer for answered questions: ``score_answer(sample, prediction, answers)`` per question; the row
    records the answers, each question's score and their mean."""

    def score(sample: Any, measurement: dict[str, Any]) -> dict[str, Any]:
        scores = [score_answer(sample, p, q.answers) for p, q in zip(measurement["predictions"], sample.questions)]
        return {"answers": [q.answers for q in sample.questions], "scores": scores,
                "score": sum(scores) / len(scores)}

    return score
