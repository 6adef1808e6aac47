"""Random pruning: the baseline every in-model method has to beat (Wen et al., 2025, arXiv 2502.11494,
and UniPruneBench report it is a strong one for VLMs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import LayersMethod, Step
from tokenzip.method import register
from tokenzip.ops.topk import keep_top_scores


@register
@dataclass
class RandomPrune(LayersMethod):
    """Drop uniformly random candidate tokens.

    The draw depends only on ``seed``, the layer and each token's position counted from the row's
    first real token, so a row gets the same tokens whatever else (and whatever padding) is in the batch.
    """

    name = "random"
    paper = ("baseline; see Wen et al., 2025, Stop Looking for Important Tokens in Multimodal Language Models, "
             "arXiv 2502.11494")

    bounds = {"seed": (0, None)}

    seed: int = 0

    def default_layers(self, architecture: str, num_layers: int) -> tuple[int, ...]:
        if architecture in ("decoder", "vlm"):  # where FastV and DART prune, so it is their baseline
            return (min(1, num_layers - 1),)
        return super().default_layers(architecture, num_layers)

    def reduce(self, step: Step) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step.layer)
        rank = step.position - step.first[:, None] if step.first is not None else step.position
        table = torch.rand(int(step.position.max()) + 1, generator=generator).to(step.position.device)
        scores = table[rank.clamp(min=0)]
        return step.prune(keep_top_scores(scores, step.candidates, step.remove))
