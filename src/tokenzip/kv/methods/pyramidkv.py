"""PyramidKV: SnapKV scores with budgets that shrink with depth."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import LayerContext, target_layers
from tokenzip.kv.methods.snapkv import SnapKV
from tokenzip.method import register
from tokenzip.ops.topk import layer_budgets


@register
@dataclass
class PyramidKV(SnapKV):
    """Lower layers attend broadly and keep more; upper layers attend narrowly and keep less.

    Budgets decrease linearly over the compressed layers with the same mean as a uniform budget
    (``beta`` sets the top/bottom spread); scores are SnapKV's.
    Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling",
    2024, arXiv 2406.02069.
    Chunked prefill: SnapKV's chunked scores; each layer's budget is computed from the tokens seen so far,
    so a layer holds at most its own budget (up to twice the mean) + chunk entries.
    """

    name = "pyramidkv"
    paper = "Cai et al. 2024, arXiv 2406.02069"

    bounds = {"beta": (1.0, None)}

    beta: float = 20.0

    def keep_counts(self, ctx: LayerContext) -> torch.Tensor:
        targets = target_layers(ctx.adapter, self.compress_sliding)
        depth = targets.index(ctx.layer_idx) if ctx.layer_idx in targets else 0
        counts = []
        for seen, n in zip(ctx.seen_lengths().tolist(), ctx.real_lengths().tolist()):
            counts.append(min(n, layer_budgets(len(targets), self.kept(seen), seen, self.beta)[depth]))
        return torch.tensor(counts, device=ctx.keys.device)
