"""Compression during generation: keep the cache under a budget while decoding long outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.base import LayerContext, LayerResult, WrapperMethod
from tokenzip.kv.context import DecodeContext
from tokenzip.method import register
from tokenzip.ops.topk import gather_tokens


@register
@dataclass
class Decoding(WrapperMethod):
    """Compress after prefill with ``base``, then, while generating, whenever a compressed layer holds
    ``interval`` entries more than its target (``budget``, or ``kept(tokens seen)`` for a ratio), compress
    it back to the target with ``base``'s scores, using the last ``decode_window`` generated queries as
    the observation window.

    Heavy-hitter eviction during generation as in H2O (Zhang et al., 2023, arXiv 2306.14048), with
    periodic rather than per-step eviction so the cost is amortised over ``interval`` steps.
    """

    name = "decoding"
    paper = "Zhang et al. 2023, arXiv 2306.14048 (decoding-time eviction)"
    decode_window: ClassVar[int] = 32
    bounds = {"interval": (1, None)}

    base: Any = "knorm"
    interval: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base.needs_whole_model():
            raise TokenzipError(f"decoding cannot use {self.base.name} as its base: it scores with an extra pass over "
                                "the prefill, which decoding steps do not have; use knorm, snapkv, tova or h2o")

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        return self.base.compress_layer(ctx)

    def is_noop(self, n_tokens: int) -> bool:
        return False  # even when prefill keeps everything, generation may exceed the budget

    def target(self, seen: int) -> int:
        return self.budget if self.budget is not None else self.kept(seen)

    def on_decode(self, step: DecodeContext) -> None:
        target = self.target(step.seen + 1)
        if step.stored < target + self.interval:
            return
        ctx = step.layer()
        keep = torch.full((ctx.keys.shape[0],), target, device=ctx.keys.device)
        indices, valid = self.base.select(ctx, self.base.masked_scores(ctx), keep)
        step.write(LayerResult(gather_tokens(ctx.keys, indices), gather_tokens(ctx.values, indices), valid))
