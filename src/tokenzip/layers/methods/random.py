"""Random pruning: the baseline every in-model method has to beat (Wen et al., 2025, arXiv 2502.11494,
and UniPruneBench report it is a strong one for VLMs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import LayersMethod, Step
from tokenzip.reduce import keep_top_scores
from tokenzip.registry import register


@register
@dataclass
class RandomPrune(LayersMethod):
    """Drop uniformly random candidate tokens.

    The draw depends only on ``seed``, the layer and each token's input position, so a row gets the
    same tokens whatever else is in the batch.
    """

    name = "random"
    paper = ("baseline; see Wen et al., 2025, Stop Looking for Important Tokens in Multimodal Language Models, "
             "arXiv 2502.11494")

    seed: int = 0

    def reduce(self, step: Step) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step.layer)
        table = torch.rand(int(step.position.max()) + 1, generator=generator).to(step.position.device)
        scores = table[step.position]
        return step.prune(keep_top_scores(scores, step.candidates, step.remove))
