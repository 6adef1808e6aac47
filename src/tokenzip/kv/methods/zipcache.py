"""ZipCache: salient tokens at higher precision, the rest at lower precision."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.base import KVMethod, LayerContext, LayerResult
from tokenzip.kv.cache import QuantizedLayer
from tokenzip.kv.methods.kivi import check_group
from tokenzip.method import register
from tokenzip.ops.attention import normalized_attention, window_attention
from tokenzip.ops.topk import gather_tokens


@register
@dataclass
class ZipCache(KVMethod):
    """Mixed-precision cache: the ``salient`` fraction of tokens with the highest *normalised* attention
    (attention received divided by the number of window queries that can see the token, so late tokens
    are not favoured) is stored at ``high_bits``, the others at ``low_bits``; the last ``residual``
    tokens stay in full precision.

    He et al., "ZipCache: Accurate and Efficient KV Cache Quantization with Salient Token Identification",
    NeurIPS 2024, arXiv 2405.14256. Saliency comes from the last ``window_size`` prefill queries (the
    paper's probe tokens), averaged over heads so every head stores the same tokens per precision.
    """

    name = "zipcache"
    paper = "He et al. 2024, arXiv 2405.14256"

    bounds = {"salient": (0.0, 1.0), "window_size": (1, None), "group": (1, None), "residual": (0, None)}
    choices = {"high_bits": (2, 4, 8), "low_bits": (2, 4, 8)}

    salient: float = 0.2
    high_bits: int = 4
    low_bits: int = 2
    window_size: int = 64
    group: int = 128
    residual: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_group(self, self.group, min(self.low_bits, self.high_bits))
        if self.ratio > 0 or self.budget is not None:
            raise TokenzipError("zipcache quantizes and removes no tokens: leave ratio at 0 (combine eviction "
                                "with quantization through kivi(evict=...))")
        if self.compress_sliding:
            raise TokenzipError("zipcache does not quantize sliding-window layers (they are bounded already)")

    def query_window(self) -> int:
        return self.window_size

    def changes_storage(self) -> bool:
        return True

    def score(self, ctx: LayerContext) -> torch.Tensor:
        valid = ctx.token_valid if ctx.token_valid is not None and ctx.token_valid.ndim == 2 else None
        attn = window_attention(ctx.queries, ctx.keys, ctx.scaling, valid)  # (B, H_q, W, N)
        return normalized_attention(attn).mean(1, keepdim=True)  # (B, 1, N)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        b, h, n, _ = ctx.keys.shape
        n_salient = int(self.salient * n) // 8 * 8  # whole bytes of packed codes at any bit width
        saliency = self.masked_scores(ctx)[:, :1]  # (B, 1, N), same for every head
        order = saliency.argsort(dim=-1, descending=True)
        salient = order[..., :n_salient].sort(dim=-1).values.expand(b, h, -1)
        regular = order[..., n_salient:].sort(dim=-1).values.expand(b, h, -1)
        blocks = [(gather_tokens(ctx.keys, salient), gather_tokens(ctx.values, salient), self.high_bits)]
        layer = QuantizedLayer.from_tensors(gather_tokens(ctx.keys, regular), gather_tokens(ctx.values, regular),
                                            self.low_bits, self.residual, self.group, blocks=blocks)
        stored = torch.cat([salient, regular], dim=-1)  # the order the layer returns its entries in
        valid = ctx.valid_per_head()
        valid = None if valid is None else valid.expand(b, h, n).gather(-1, stored)
        return LayerResult(gather_tokens(ctx.keys, stored), gather_tokens(ctx.values, stored), valid, layer=layer)
