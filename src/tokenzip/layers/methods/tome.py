"""ToMe: Token Merging (Bolya et al., 2023, "Token Merging: Your ViT But Faster", arXiv 2210.09461)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import Step
from tokenzip.layers.merging_method import MergingMethod
from tokenzip.method import register
from tokenzip.ops.merging import bipartite_soft_matching


@register
@dataclass
class ToMe(MergingMethod):
    """Merge similar tokens by bipartite soft matching on attention keys, with proportional attention.

    After each chosen layer, tokens alternate into sets A and B; every A token finds its most similar
    B token (cosine similarity of the layer's keys averaged over heads) and the ``r`` most similar
    pairs are merged (size-weighted average). Sizes are tracked and, with ``prop_attn``, later layers
    add ``log(size)`` to the attention logits so a merged token counts as the tokens it stands for.
    At most half the candidates can merge at one layer. ``metric="hidden"`` matches tokens by the
    layer's output hidden states instead of its keys (better for mean-pooled text embeddings).
    """

    name = "tome"
    paper = "Bolya et al., 2023, Token Merging: Your ViT But Faster, arXiv 2210.09461"

    def reduce(self, step: Step) -> torch.Tensor:
        return bipartite_soft_matching(self.similarity_metric(step), step.candidates, step.remove)
