"""Knorm: keys with a small L2 norm attract attention; keep them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.geometry import key_norm_scores


@register
@dataclass
class Knorm(KVMethod):
    """Keep the keys with the lowest L2 norm (score = -||k||); needs no attention at all.

    Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression", EMNLP 2024,
    arXiv 2406.11430.
    Chunked prefill: the same rule on the kept entries and the chunk's (a key's norm does not depend on the
    others), applied to keys computed with the compressed cache of the layers below.
    """

    name = "knorm"
    paper = "Devoto et al. 2024, arXiv 2406.11430"
    chunkable = True

    def score(self, ctx: LayerContext) -> torch.Tensor:
        return key_norm_scores(ctx.keys)
