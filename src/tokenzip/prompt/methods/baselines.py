"""Position baselines every prompt method must beat: keep the beginning, the end, or a random subset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenzip.method import register
from tokenzip.prompt.base import PromptJob, PromptMethod


@register
@dataclass
class Head(PromptMethod):
    """Keep the first words that fit the budget (truncation)."""

    name = "head"
    paper = "baseline"
    uses_scorer = False

    def priority(self, job: PromptJob) -> np.ndarray:
        return -np.arange(job.pieces.n_units, dtype=np.float64)


@register
@dataclass
class Tail(PromptMethod):
    """Keep the last words that fit the budget."""

    name = "tail"
    paper = "baseline"
    uses_scorer = False

    def priority(self, job: PromptJob) -> np.ndarray:
        return np.arange(job.pieces.n_units, dtype=np.float64)


@register
@dataclass
class RandomWords(PromptMethod):
    """Keep a uniformly random subset of the words (seeded)."""

    name = "random"
    paper = "baseline"
    uses_scorer = False

    bounds = {"seed": (0, None)}

    seed: int = 0

    def priority(self, job: PromptJob) -> np.ndarray:
        return np.random.default_rng(self.seed).permutation(job.pieces.n_units).astype(np.float64)
