"""TOVA: the last token's attention, averaged over heads, decides."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.attention import window_attention


@register
@dataclass
class TOVA(KVMethod):
    """Score = attention of the last query, averaged over all heads (one ranking for the layer).

    Oren et al., "Transformers are Multi-State RNNs" (Token Omission Via Attention), 2024, arXiv 2401.06104.
    Chunked prefill: the last query of each chunk scores the kept entries and the chunk's (TOVA itself
    evicts token by token; a chunk of 1 is the paper's setting).
    """

    name = "tova"
    paper = "Oren et al. 2024, arXiv 2401.06104"
    chunkable = True
    window = 1

    def score(self, ctx: LayerContext) -> torch.Tensor:
        valid = ctx.token_valid if ctx.token_valid is not None and ctx.token_valid.ndim == 2 else None
        attn = window_attention(ctx.queries[:, :, -1:], ctx.keys, ctx.scaling, valid)  # (B, H_q, 1, N)
        return attn.mean(dim=(1, 2))[:, None, :]
