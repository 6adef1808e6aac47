"""ToMe: Token Merging (Bolya et al., 2023, "Token Merging: Your ViT But Faster", arXiv 2210.09461)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.errors import TokenzipError
from tokenzip.layers.base import LayersMethod, Step
from tokenzip.reduce import bipartite_soft_matching
from tokenzip.registry import register

METRICS = ("keys", "hidden")


@register
@dataclass
class ToMe(LayersMethod):
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
    kinds = ("encoder", "vision")
    needs = frozenset({"keys"})
    merges = True

    prop_attn: bool = True
    metric: str = "keys"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.metric not in METRICS:
            raise TokenzipError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if self.metric == "hidden":
            self.needs = frozenset()  # the layer's output is all it needs

    def similarity_metric(self, step: Step) -> torch.Tensor:
        return step.need("keys") if self.metric == "keys" else step.hidden

    def reduce(self, step: Step) -> torch.Tensor:
        return bipartite_soft_matching(self.similarity_metric(step), step.candidates, step.remove)
