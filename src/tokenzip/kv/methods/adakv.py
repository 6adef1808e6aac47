"""Ada-KV: head-adaptive budgets inside a layer, wrapping any scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.kv.base import LayerContext, WrapperMethod
from tokenzip.method import register
from tokenzip.ops.topk import keep_topk_per_head


@register
@dataclass
class AdaKV(WrapperMethod):
    """Spend a layer's budget on the best entries across all its KV heads (each head keeps at least
    ``floor`` of a uniform share), scored by ``base``.

    Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient LLM
    Inference", 2024, arXiv 2407.11550.
    Memory: each head's entries are stored without padding (:class:`tokenzip.models.cache_layers.PackedLayer`),
    so the layer holds ``1 - ratio`` of its entries whatever the split between heads; attention builds a padded
    view at the largest head budget for one layer at a time (transient). With one KV head (Gemma 3 270M) it
    equals ``base``.
    Chunked prefill (when ``base`` can chunk): ``base``'s chunked scores, budgets re-spread over the heads
    after every chunk; a layer then holds its budget + chunk entries over its heads, of which one head may hold
    more than budget + chunk when heads differ.
    """

    name = "adakv"
    paper = "Feng et al. 2024, arXiv 2407.11550"
    chunkable = True

    bounds = {"floor": (0.0, 1.0)}

    base: Any = "expected_attention"
    floor: float = 0.2

    def score(self, ctx: LayerContext) -> torch.Tensor:
        return self.base.score(ctx)

    def select(self, ctx: LayerContext, scores: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return keep_topk_per_head(scores, keep, self.floor)
