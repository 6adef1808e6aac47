"""FastV (Chen et al., 2024, "An Image is Worth 1/2 Tokens After Layer 2", arXiv 2403.06764)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import LayersMethod, Step
from tokenzip.method import register
from tokenzip.ops.topk import keep_top_scores


@register
@dataclass
class FastV(LayersMethod):
    """After layer K of a decoder, drop the span tokens the last token attends to least.

    The score is the attention of the last prompt token at layer ``K - 1`` (averaged over heads),
    computed for that one query row from the layer's queries and keys (the layer keeps SDPA). The
    span is the image tokens of a VLM, or every prompt token but the first ``protect`` and the
    last ``protect_last`` ones of a text decoder. Default: after layer 1 (the paper's K = 2).
    """

    name = "fastv"
    paper = "Chen et al., 2024, An Image is Worth 1/2 Tokens After Layer 2, arXiv 2403.06764"
    architectures = ("decoder", "vlm")
    needs = frozenset({"last_attention"})

    def default_layers(self, architecture: str, num_layers: int) -> tuple[int, ...]:
        return (min(1, num_layers - 1),)

    def reduce(self, step: Step) -> torch.Tensor:
        return step.prune(keep_top_scores(step.need("last_attention"), step.candidates, step.remove))
