"""SnapKV: the last queries of the prompt (the observation window) vote for the tokens to keep."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.attention import observation_window_scores, window_attention


def window_scores(ctx: LayerContext, kernel: int) -> tuple[torch.Tensor, int]:
    """Pooled observation-window attention per KV head, and the window length actually used."""
    if ctx.queries is None:
        raise RuntimeError("this method needs the last prefill queries; they were not captured")
    valid = ctx.token_valid if ctx.token_valid is not None and ctx.token_valid.ndim == 2 else None
    attn = window_attention(ctx.queries, ctx.keys, ctx.scaling, valid)
    return observation_window_scores(attn, ctx.keys.shape[1], kernel, valid), ctx.queries.shape[2]


@register
@dataclass
class SnapKV(KVMethod):
    """Score = attention from the last ``window`` queries, average-pooled over ``kernel`` positions,
    averaged over each GQA group; the window itself is always kept.

    Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024, arXiv 2404.14469.
    Query-agnostic use (question asked after compression) gives the window no question to look at.
    Chunked prefill (``chunk_size``): after each chunk, the chunk's last ``window_size`` queries score the
    entries kept so far together with the chunk's, and the chunk's last ``window_size`` tokens are protected.
    """

    name = "snapkv"
    paper = "Li et al. 2024, arXiv 2404.14469"
    chunkable = True

    bounds = {"window_size": (1, None), "kernel": (1, None)}

    window_size: int = 64
    kernel: int = 5

    def query_window(self) -> int:
        return self.window_size

    def score(self, ctx: LayerContext) -> torch.Tensor:
        scores, w = window_scores(ctx, self.kernel)
        top = scores.amax(dim=(1, 2), keepdim=True) + 1  # per row: a batch scores each row as if alone
        scores[..., scores.shape[-1] - w :] = top  # protect the observation window
        return scores
