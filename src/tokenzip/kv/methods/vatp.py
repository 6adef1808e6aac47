"""VATP: attention times value norm."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.kv.methods.snapkv import window_scores
from tokenzip.method import register


@register
@dataclass
class VATP(KVMethod):
    """Score = observation-window attention x ||v||_1: a token matters by how much it is attended *and*
    by how much it moves the output.

    Guo et al., "Attention Score is not All You Need for Token Importance Indicator in KV Cache Reduction:
    Value Also Matters", EMNLP 2024, arXiv 2406.12335. The window is protected as in SnapKV.
    Chunked prefill: each chunk's last queries score the kept entries and the chunk's, as in SnapKV.
    """

    name = "vatp"
    paper = "Guo et al. 2024, arXiv 2406.12335"
    chunkable = True

    bounds = {"window_size": (1, None)}

    window_size: int = 64

    def query_window(self) -> int:
        return self.window_size

    def score(self, ctx: LayerContext) -> torch.Tensor:
        attn, w = window_scores(ctx, kernel=1)
        scores = attn * ctx.values.float().abs().sum(-1)
        scores[..., scores.shape[-1] - w :] = scores.amax(dim=(1, 2), keepdim=True) + 1  # per row
        return scores
