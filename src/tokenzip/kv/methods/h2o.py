"""H2O: heavy hitters (tokens that received the most attention) plus recent tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.attention import group_mean


@register
@dataclass
class H2O(KVMethod):
    """Score = attention each token received from every prefill query (summed), averaged per GQA group;
    the most recent ``recent`` fraction of the budget is reserved for the latest tokens.

    Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models",
    NeurIPS 2023, arXiv 2306.14048. The received attention is computed from the prefill's own queries in
    chunks (SDPA stays on for the model), which costs about one more attention pass per layer.
    Chunked prefill: each chunk's queries add the attention they pay to the kept entries and the chunk's to
    what those entries received before (carried with them), so an entry's score is the attention it got
    while it was held, as in H2O's own streaming eviction; the recent share is of the budget.
    """

    name = "h2o"
    paper = "Zhang et al. 2023, arXiv 2306.14048"
    needs_received = True
    chunkable = True
    bounds = {"recent": (0.0, 1.0)}

    recent: float = 0.5

    def accumulated(self, ctx: LayerContext) -> torch.Tensor:
        """Attention received per KV head, plus what the kept entries received in earlier chunks."""
        if ctx.received is None:
            raise RuntimeError("h2o needs the attention received during prefill; it was not captured")
        received = group_mean(ctx.received, ctx.keys.shape[1])
        return received if ctx.carried is None else received + ctx.carried

    def carry(self, ctx: LayerContext) -> torch.Tensor | None:
        return self.accumulated(ctx) if ctx.chunked else None

    def score(self, ctx: LayerContext) -> torch.Tensor:
        scores = self.accumulated(ctx)
        n = scores.shape[-1]
        n_recent = int(self.recent * self.kept(int(ctx.seen_lengths().min())))
        if n_recent:
            scores[..., n - n_recent :] = scores.amax(dim=(1, 2), keepdim=True) + 1  # per row
        return scores
