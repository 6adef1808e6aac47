"""Compactor: keep the keys that are geometric outliers (leverage) or that the context attends to (non-causally)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenzip.kv.auto import AutoRatioMethod
from tokenzip.kv.base import ALL_QUERIES, LayerContext
from tokenzip.method import AUTO, register
from tokenzip.ops.attention import group_mean, noncausal_chunk_attention
from tokenzip.ops.geometry import leverage_scores, value_norm, zscore


def protected(ctx: LayerContext, first: int, last: int) -> torch.Tensor:
    """``(B, 1, N)``: the first ``first`` and last ``last`` real tokens of each row."""
    pos = ctx.positions()
    n = ctx.real_lengths()[:, None]
    return (((pos >= 0) & (pos < first)) | (pos >= n - last))[:, None, :]


def all_queries(ctx: LayerContext, name: str) -> torch.Tensor:
    """The prefill's queries for every cached entry, ``(B, H_q, N, D)``."""
    if ctx.queries is None or ctx.queries.shape[2] != ctx.n_tokens:
        raise RuntimeError(f"{name} scores with every prefill query; they were not captured for this layer "
                           "(it compresses after a prefill, not during decoding)")
    return ctx.queries


@register
@dataclass
class Compactor(AutoRatioMethod):
    """score = ``blending`` * z(leverage of the pre-RoPE keys) + z(pool3(A * ||v||)): approximate leverage scores
    (Gaussian sketch of ``sketch`` columns) find keys outside the span of the others; ``A`` is the attention each key
    receives from the queries of its ``chunk``-token chunk, before and after it (non-causal). The first ``sinks``
    and last ``recent`` tokens are kept and left out of the statistics.

    Chari & Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with Approximate Leverage
    Scores", 2025, arXiv 2507.08143. ``blending`` defaults to the ratio (kvpress's choice), 0.5 with
    ``ratio="auto"`` (compactor-vllm's). Deviation: the paper's context-calibrated compression fits how quality
    falls with compression on calibration data; ``ratio="auto"`` here needs none: each layer keeps the fewest
    top entries whose lost share of the non-causal attention ``A`` stays within ``tolerance``.
    """

    name = "compactor"
    paper = "Chari & Van Durme 2025, arXiv 2507.08143"
    default_tolerance = 0.4

    sinks: int = 8
    recent: int = 4
    chunk: int = 256
    sketch: int = 48
    blending: float | None = None

    def query_window(self) -> int:
        return ALL_QUERIES

    def score_and_mass(self, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        queries = all_queries(ctx, self.name)
        keep = protected(ctx, self.sinks, self.recent)
        valid = ctx.valid_per_head()
        scored = ~keep if valid is None else valid & ~keep
        leverage = leverage_scores(ctx.unrotated_keys(), scored, self.sketch)
        attn = group_mean(noncausal_chunk_attention(queries, ctx.keys, ctx.scaling, self.chunk, ctx.valid_tokens()),
                          ctx.keys.shape[1])
        weighted = attn * value_norm(ctx.values)
        b, h, n = weighted.shape
        weighted = F.avg_pool1d(weighted.reshape(b * h, 1, n), 3, stride=1, padding=1,
                                count_include_pad=False).reshape(b, h, n)
        blending = self.blending if self.blending is not None else (0.5 if self.ratio == AUTO else float(self.ratio))
        scores = blending * zscore(leverage, scored) + zscore(weighted, scored)
        scores = scores.masked_fill(keep, float(scores.max()) + 1.0)
        return scores, attn
