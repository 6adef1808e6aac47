"""KeyDiff: keep the keys that differ most from the others."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.geometry import key_diversity_scores


@register
@dataclass
class KeyDiff(KVMethod):
    """Score = -cos(key, mean key) per head: distinctive keys are kept; no attention weights needed.

    Park et al., "KeyDiff: Key Similarity-Based KV Cache Eviction for Long-Context LLM Inference in
    Resource-Constrained Environments", 2025, arXiv 2504.15364.
    Chunked prefill: the mean key is that of the entries held after each chunk (the kept ones and the
    chunk's), as in the paper's block-wise eviction, not of the whole context.
    """

    name = "keydiff"
    paper = "Park et al. 2025, arXiv 2504.15364"
    chunkable = True

    def score(self, ctx: LayerContext) -> torch.Tensor:
        return key_diversity_scores(ctx.keys)
