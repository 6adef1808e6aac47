"""CUR: keep the entries whose key and value rows a CUR decomposition of the cache would pick."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.auto import AutoRatioMethod
from tokenzip.kv.base import LayerContext
from tokenzip.method import register
from tokenzip.ops.geometry import cur_norm_scores, leverage_scores


@register
@dataclass
class CUR(AutoRatioMethod):
    """score = (leverage of the key row) x (leverage of the value row): CUR picks rows by leverage, and the value
    factor is what the attention output is made of. ``proxy="leverage"`` computes leverage through a Gaussian sketch
    of ``sketch`` columns; ``proxy="norm"`` uses kvpress CURPress's cheaper stand-in, squared row norms normalised
    within ``local_window``-token windows. The first ``sinks`` tokens are kept.

    Sengupta et al., "Value-Guided KV Compression for LLMs via Approximated CUR Decomposition" (CurDKV), 2025,
    arXiv 2509.15038, as in kvpress's CURPress (keys as cached). With ``ratio="auto"`` each layer keeps the fewest
    top entries whose lost share of the score mass stays within ``tolerance``.
    """

    name = "cur"
    paper = "Sengupta et al. 2025, arXiv 2509.15038"
    default_tolerance = 0.25

    proxy: str = "leverage"
    sketch: int = 48
    local_window: int = 16
    sinks: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proxy not in ("leverage", "norm"):
            raise TokenzipError(f"cur: proxy must be 'leverage' or 'norm', got {self.proxy!r}")

    def score_and_mass(self, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        valid = ctx.valid_per_head()
        if self.proxy == "norm":
            scores = cur_norm_scores(ctx.keys, ctx.values, self.local_window)
        else:
            scores = leverage_scores(ctx.keys, valid, self.sketch) * leverage_scores(ctx.values, valid, self.sketch)
        mass = scores / scores.sum(-1, keepdim=True).clamp_min(1e-12)
        pos = ctx.positions()[:, None, :]
        return scores.masked_fill((pos >= 0) & (pos < self.sinks), float(scores.max()) + 1.0), mass
