"""``qa_f1``: the planted facts of ``qa``, scored by token F1 (the ``qa_f1`` kind) instead of string match."""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.bench.tasks.qa import PlantedQA
from tokenzip.bench.tasks.registry import register_task


@register_task
@dataclass
class PlantedQAF1(PlantedQA):
    """Samples drawn as ``qa``'s (its own name seeds them, so not the same ones); an answer scores the F1 of its
    words against the reference's, so "Morkin." scores 100% and a full sentence around it less."""

    name = "qa_f1"
    description = "facts planted in generated prose, asked about in other words; token F1 (LongBench)"
    kind = "qa_f1"
    metric = "f1"
