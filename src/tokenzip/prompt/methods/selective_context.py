"""Selective Context (Li et al., 2023, "Compressing Context to Enhance Inference Efficiency of Large
Language Models", EMNLP, arXiv 2310.06201).

A causal LM reads the text once; the self-information of a lexical unit is the sum of its tokens'
self-information, ``I(x_i) = -log p(x_i | x_<i)``; the least informative units are dropped. Units
here are words (single graphemes in scripts without spaces).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenzip.method import register
from tokenzip.prompt.base import PromptJob, PromptMethod


@register
@dataclass
class SelectiveContext(PromptMethod):
    """Drop the words with the least self-information under a small causal LM (one pass)."""

    name = "selective_context"
    paper = "Li et al., 2023, arXiv 2310.06201"

    def priority(self, job: PromptJob) -> np.ndarray:
        return job.information(how="sum")
