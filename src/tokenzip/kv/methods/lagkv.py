"""LagKV: judge each partition of the cache against the partition that follows it; no attention needed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.geometry import lagkv_priority


@register
@dataclass
class LagKV(KVMethod):
    """Keep, in every partition of ``lag`` tokens, those most spread across channels relative to the next partition.

    After ``sinks`` tokens the context is cut into partitions of ``lag`` tokens; each partition's keys and values
    are normalised per channel by the min/max of the next partition, each token scores the softmax (over its
    partition) of the std over channels, keys' and values' scores added, and the same number of top tokens is
    kept from every partition. The sinks and the last partition (with the remainder after it) are always kept.

    Liang et al., "LagKV: Lag-Relative Information of the KV Cache Tells Which Tokens Are Important", 2025,
    arXiv 2504.04704; training-free, attention-free and query-agnostic. Exact score: ``ops.geometry.lagkv_priority``.
    Defaults as kvpress's LagKVPress (4 sinks, lag 128). Deviations: ``ratio`` is the fraction removed from the
    whole context (tokenzip's meaning), so with the sinks and the tail kept the scored partitions lose more than
    ``ratio``; a budget too small for sinks + tail keeps the sinks, then the most recent tokens; a context with
    fewer than two partitions after the sinks keeps the sinks and the most recent tokens (as kvpress does);
    the one-shot compression after prefill replaces the paper's recursive compression as the cache grows.
    Keys are scored as cached (after RoPE), as in kvpress. Left padding is skipped: each row is partitioned
    from its first real token. Chunked prefill: not supported.
    """

    name = "lagkv"
    paper = "Liang et al. 2025, arXiv 2504.04704"
    bounds = {"sinks": (0, None), "lag": (2, None)}

    sinks: int = 4
    lag: int = 128

    def score(self, ctx: LayerContext) -> torch.Tensor:
        n = ctx.n_tokens
        scores = torch.zeros(ctx.keys.shape[:3], device=ctx.keys.device)  # padding: masked out by the caller
        for row, length in enumerate(ctx.real_lengths().tolist()):
            real = slice(n - length, n)
            scores[row, :, real] = lagkv_priority(ctx.keys[row, :, real], ctx.values[row, :, real],
                                                  self.sinks, self.lag)
        return scores
