"""H2O: heavy hitters (tokens that received the most attention) plus recent tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.registry import register
from tokenzip.scoring import group_mean


@register
@dataclass
class H2O(KVMethod):
    """Score = attention each token received from every prefill query (summed), averaged per GQA group;
    the most recent ``recent`` fraction of the budget is reserved for the latest tokens.

    Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models",
    NeurIPS 2023, arXiv 2306.14048. The received attention is computed from the prefill's own queries in
    chunks (SDPA stays on for the model), which costs about one more attention pass per layer.
    """

    name = "h2o"
    paper = "Zhang et al. 2023, arXiv 2306.14048"
    needs_received = True
    bounds = {"recent": (0.0, 1.0)}

    recent: float = 0.5

    def score(self, ctx: LayerContext) -> torch.Tensor:
        if ctx.received is None:
            raise RuntimeError("h2o needs the attention received during prefill; it was not captured")
        scores = group_mean(ctx.received, ctx.keys.shape[1])
        n = scores.shape[-1]
        n_recent = int(self.recent * self.kept(int(ctx.real_lengths().min())))
        if n_recent:
            scores[..., n - n_recent :] = scores.amax(dim=(1, 2), keepdim=True) + 1  # per row
        return scores
