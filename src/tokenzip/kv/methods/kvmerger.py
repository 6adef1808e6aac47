"""KVMerger-style merging: evicted entries are merged into similar kept ones instead of dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenzip.kv.base import LayerContext, LayerResult, WrapperMethod
from tokenzip.method import register
from tokenzip.ops.merging import merge_evicted


@register
@dataclass
class KVMerger(WrapperMethod):
    """Select the entries to keep with ``base``; every evicted entry whose key has cosine similarity above
    ``threshold`` with a kept key is merged into the most similar one, with Gaussian-kernel weights.

    After Wang et al., "Model Tells You Where to Merge: Adaptive KV Cache Merging for LLMs on Long-Context
    Tasks" (KVMerger), 2024, arXiv 2407.08454. Simplification: merge sets are formed against the kept
    entries chosen by ``base`` rather than by the paper's consecutive-similarity clustering.
    """

    name = "kvmerger"
    paper = "Wang et al. 2024, arXiv 2407.08454"

    bounds = {"threshold": (-1.0, 1.0)}

    base: Any = "snapkv"
    threshold: float = 0.5

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        keep = self.keep_counts(ctx)
        indices, valid = self.base.select(ctx, self.base.masked_scores(ctx), keep)
        token_valid = ctx.valid_per_head()
        token_valid = None if token_valid is None else token_valid.expand(*ctx.keys.shape[:3])
        keys, values = merge_evicted(ctx.keys, ctx.values, indices, valid, token_valid, self.threshold)
        return LayerResult(keys, values, valid)
