"""``ratio="auto"``: the largest ratio a context can bear, chosen per context and per layer.

A method that can estimate what removing each entry loses (attention it would have received, its share of the
key matrix's leverage) defines :meth:`AutoRatioMethod.score_and_mass`. With ``ratio="auto"`` each layer then
keeps the fewest top-scored entries whose lost mass stays within ``tolerance`` (never removing more than
``max_ratio``); a number with ``tolerance`` set does the same with that number as the ceiling. The ratio
chosen for each layer is kept in ``method.chosen_ratios`` (``{layer: [ratio per batch row]}``), the achieved
ratio over all layers in the result's ``achieved_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.base import KVMethod, LayerContext, LayerResult
from tokenzip.method import AUTO
from tokenzip.ops.topk import gather_tokens, keep_within_loss


@dataclass
class AutoRatioMethod(KVMethod):
    """A KV method that accepts ``ratio="auto"`` (see the module docstring).

    ``tolerance``: the largest estimated loss allowed (a fraction of the method's mass, 0-1; 0 keeps everything;
    ``default_tolerance`` with ``ratio="auto"``: each method's masses spread differently, so each has its own,
    set so that about half of the entries go on average over 2k-token contexts of four task families, seed 1,
    with Gemma 3 270M: see benchmarks/kv-frontier.md). ``max_ratio``: the most ``ratio="auto"`` removes from a
    layer.
    """

    auto_ratio: ClassVar[bool] = True
    default_tolerance: ClassVar[float] = 0.1

    tolerance: float | None = None
    max_ratio: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        for label, value in (("tolerance", self.tolerance), ("max_ratio", self.max_ratio)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < 1):
                raise TokenzipError(f"{self.name}: {label} must be a number in [0, 1), got {value!r}")
        if self.budget is not None and self.auto:
            raise TokenzipError(f"{self.name}: a budget fixes the entries kept; give it without ratio='auto' or "
                                "tolerance")
        self.chosen_ratios: dict[int, list[float]] = {}

    @property
    def auto(self) -> bool:
        """Whether this method chooses its ratio per context (``ratio="auto"`` or a tolerance)."""
        return self.ratio == AUTO or self.tolerance is not None

    def ceiling(self) -> float:
        """The most a layer may lose: ``max_ratio`` for ``ratio="auto"``, else the ratio itself."""
        return self.max_ratio if self.ratio == AUTO else float(self.ratio)

    def is_noop(self, n_tokens: int) -> bool:
        if self.auto:
            return n_tokens - int(n_tokens * self.ceiling()) >= n_tokens
        return super().is_noop(n_tokens)

    # --- what subclasses define -------------------------------------------------------------
    def score_and_mass(self, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(B, H_kv, N)`` (higher kept first) and the mass removal of each entry loses (``>= 0``)."""
        raise NotImplementedError

    def score(self, ctx: LayerContext) -> torch.Tensor:
        return self.score_and_mass(ctx)[0]

    # --- choosing the ratio ------------------------------------------------------------------
    def auto_keep(self, ctx: LayerContext, scores: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
        """Entries kept per head in each batch row of this layer, and the chosen ratio recorded.

        In a chunked prefill the entries are those kept so far plus the newest chunk: the floor (``1 - ceiling``)
        and the recorded ratio count the tokens seen so far, as a whole prefill would."""
        n, seen = ctx.real_lengths(), ctx.seen_lengths().to(ctx.keys.device)
        least = torch.minimum(seen - (seen.float() * self.ceiling()).long(), n)
        tolerance = self.default_tolerance if self.tolerance is None else self.tolerance
        keep = keep_within_loss(scores, mass.expand_as(scores), tolerance, least)
        self.chosen_ratios[ctx.layer_idx] = (1 - keep.float() / seen.clamp_min(1).float()).tolist()
        return keep

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        if not self.auto:
            return super().compress_layer(ctx)
        scores, mass = self.score_and_mass(self.own_queries(ctx))
        scores = scores.float().expand(*ctx.keys.shape[:3])
        valid = ctx.valid_per_head()
        scores = scores if valid is None else scores.masked_fill(~valid, float("-inf"))
        indices, kept = self.select(ctx, scores, self.auto_keep(ctx, scores, mass.float()))
        return LayerResult(gather_tokens(ctx.keys, indices), gather_tokens(ctx.values, indices), kept, indices=indices)
