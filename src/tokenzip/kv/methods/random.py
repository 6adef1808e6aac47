"""Random eviction: the floor every KV method must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register


@register
@dataclass
class RandomKV(KVMethod):
    """Keep a uniformly random subset of the cache (seeded per layer). Chunked prefill: a random subset of
    the kept entries and the chunk's after each chunk, so older tokens survive less often."""

    name = "random"
    paper = "baseline"
    chunkable = True

    bounds = {"seed": (0, None)}

    seed: int = 0

    def score(self, ctx: LayerContext) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1000 + ctx.layer_idx)
        return torch.rand(ctx.keys.shape[:3], generator=generator).to(ctx.keys.device)
