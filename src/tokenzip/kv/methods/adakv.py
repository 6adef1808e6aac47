"""Ada-KV: head-adaptive budgets inside a layer, wrapping any scorer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.reduce import keep_topk_per_head
from tokenzip.registry import get_method, register


def build_base(base: Any, ratio: float, budget: int | None, compress_sliding: bool) -> KVMethod:
    """The wrapped method: a name (built with the wrapper's ratio/budget) or a method object."""
    if isinstance(base, KVMethod):
        return base
    return get_method(str(base), stage="kv", ratio=ratio, budget=budget, compress_sliding=compress_sliding)


@register
@dataclass
class AdaKV(KVMethod):
    """Spend a layer's budget on the best entries across all its KV heads (each head keeps at least
    ``floor`` of a uniform share), scored by ``base``.

    Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient LLM
    Inference", 2024, arXiv 2407.11550.
    Memory: storage is sized to the largest head budget, with a per-head validity mask, so it saves
    ``1 - max_head_budget / N`` of the layer's memory, less than the nominal ratio when heads differ.
    With one KV head (Gemma 3 270M) it equals ``base``.
    """

    name = "adakv"
    paper = "Feng et al. 2024, arXiv 2407.11550"

    base: Any = "expected_attention"
    floor: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.base = build_base(self.base, self.ratio, self.budget, self.compress_sliding)

    def query_window(self) -> int:
        return self.base.query_window()

    def wants_received(self) -> bool:
        return self.base.wants_received()

    def score(self, ctx: LayerContext) -> torch.Tensor:
        return self.base.score(ctx)

    def select(self, ctx: LayerContext, scores: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return keep_topk_per_head(scores, keep, self.floor)
