"""DART: duplication-aware token reduction (Wen et al., 2025, "Stop Looking for Important Tokens in
Multimodal Language Models: Duplication Matters More", arXiv 2502.11494)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import LayersMethod, Step
from tokenzip.method import register
from tokenzip.ops.topk import duplication_aware_keep


@register
@dataclass
class DART(LayersMethod):
    """Keep the tokens that duplicate a few pivot tokens least; needs no attention weights.

    Pivots are the tokens with the largest key L1 norm: ``pivots`` of them among the candidates, and
    as many again among the tokens after the span (a decoder's question), as in the paper. Each pivot
    then claims an equal share of the kept tokens: the candidates least cosine-similar to it (hidden
    states of the layer's output). Decoders: after layer 1 by default (the paper's K = 2).
    """

    name = "dart"
    paper = ("Wen et al., 2025, Stop Looking for Important Tokens in Multimodal Language Models: "
             "Duplication Matters More, arXiv 2502.11494")
    needs = frozenset({"key_l1"})
    bounds = {"pivots": (1, None)}

    pivots: int = 4

    def default_layers(self, architecture: str, num_layers: int) -> tuple[int, ...]:
        if architecture in ("decoder", "vlm"):
            return (min(1, num_layers - 1),)
        return super().default_layers(architecture, num_layers)

    def reduce(self, step: Step) -> torch.Tensor:
        norm = step.need("key_l1")
        last_candidate = torch.where(step.candidates, step.position, -1).amax(-1, keepdim=True)
        after = step.valid & ~step.candidates & (step.position > last_candidate)
        groups = [step.candidates, after]
        picks = []
        for group in groups:
            k = min(self.pivots, group.shape[1])
            top = norm.masked_fill(~group, float("-inf")).topk(k, dim=-1)
            picks.append(torch.where(torch.isfinite(top.values), top.indices, -1))
        keep = step.candidates.sum(-1) - step.remove
        kept = duplication_aware_keep(step.hidden, torch.cat(picks, dim=-1), step.candidates, keep)
        return step.prune(kept | (step.valid & ~step.candidates))
