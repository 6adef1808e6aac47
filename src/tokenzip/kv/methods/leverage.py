"""Leverage: keep the keys the rest of the key matrix cannot express (statistical leverage)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.auto import AutoRatioMethod
from tokenzip.kv.base import LayerContext
from tokenzip.method import register
from tokenzip.ops.geometry import leverage_scores


@register
@dataclass
class Leverage(AutoRatioMethod):
    """score = leverage of each pre-RoPE key among the centred keys of its head, ``k_i^T (K^T K)^-1 k_i``,
    approximated through a Gaussian sketch of ``sketch`` columns (0: exact). A key far outside the span of the
    others scores ~1; keys repeating one direction share it.

    Chari & Van Durme, "Compactor: ...", 2025, arXiv 2507.08143 (the leverage half of Compactor, kvpress's
    LeverageScorePress). With ``ratio="auto"`` each layer keeps the fewest top keys whose lost share of the total
    leverage (the rank of the key matrix) stays within ``tolerance``.
    """

    name = "leverage"
    paper = "Chari & Van Durme 2025, arXiv 2507.08143"
    default_tolerance = 0.35

    sketch: int = 48

    def score_and_mass(self, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        leverage = leverage_scores(ctx.unrotated_keys(), ctx.valid_per_head(), self.sketch)
        return leverage, leverage
