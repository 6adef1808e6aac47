"""Zero-TPrune: zero-shot token pruning with the attention graph (Wang et al., 2024, arXiv 2305.17328)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import LayersMethod, Step
from tokenzip.method import register
from tokenzip.ops.attention import weighted_pagerank
from tokenzip.ops.merging import soft_matching
from tokenzip.ops.topk import keep_top_scores


@register
@dataclass
class ZeroTPrune(LayersMethod):
    """Rank tokens by Weighted PageRank over the attention graph, then prune by importance and similarity.

    I-stage: the ``importance_share`` of the tokens due at a layer with the lowest PageRank
    importance leave. S-stage: the remaining candidates, ordered by importance, alternate into two
    groups (so each token of the less important group A has a partner of similar importance in B);
    the A tokens most similar to a B token (cosine of keys) leave, as they duplicate it. Needs the
    full attention matrix of the reduction layers, computed from their queries and keys.
    """

    name = "zero_tprune"
    paper = ("Wang et al., 2024, Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the Attention Graph, "
             "arXiv 2305.17328")
    architectures = ("encoder", "vision")
    needs = frozenset({"attention", "keys"})

    bounds = {"importance_share": (0.0, 1.0), "iterations": (1, None)}

    importance_share: float = 0.5
    iterations: int = 30

    def reduce(self, step: Step) -> torch.Tensor:
        importance = weighted_pagerank(step.need("attention"), step.valid, self.iterations)
        left = step.candidates.sum(-1)
        by_similarity = torch.minimum(((1 - self.importance_share) * step.remove).long(), left // 2)
        keep = keep_top_scores(importance, step.candidates, step.remove - by_similarity)
        candidates = step.candidates & keep
        order = importance.masked_fill(~candidates, float("inf")).argsort(dim=-1, stable=True)
        half = max(1, order.shape[1] // 2)
        src, dst = order[:, 0 : 2 * half : 2], order[:, 1 : 2 * half : 2]
        dest = soft_matching(step.need("keys"), src, candidates.gather(1, src), dst, candidates.gather(1, dst),
                             by_similarity)
        index = torch.arange(dest.shape[1], device=dest.device)
        return step.prune(keep & (dest == index))
