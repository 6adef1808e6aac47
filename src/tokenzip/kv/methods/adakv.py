"""Ada-KV: head-adaptive budgets inside a layer, wrapping any scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.kv.base import LayerContext, WrapperMethod
from tokenzip.ops.topk import keep_topk_per_head
from tokenzip.registry import register


@register
@dataclass
class AdaKV(WrapperMethod):
    """Spend a layer's budget on the best entries across all its KV heads (each head keeps at least
    ``floor`` of a uniform share), scored by ``base``.

    Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient LLM
    Inference", 2024, arXiv 2407.11550.
    Memory: storage is sized to the largest head budget, with a per-head validity mask, so it saves
    ``1 - max_head_budget / N`` of the layer's memory, less than the nominal ratio when heads differ.
    With one KV head (Gemma 3 270M) it equals ``base``.
    Chunked prefill (when ``base`` can chunk): ``base``'s chunked scores, budgets re-spread over the heads
    after every chunk; a layer then holds at most its largest head budget + chunk entries, which can exceed
    budget + chunk when heads differ.
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
