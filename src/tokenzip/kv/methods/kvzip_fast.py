"""KVzip at a fraction of its cost: its reconstruction attention estimated from the prefill, or a shorter replay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.auto import AutoRatioMethod
from tokenzip.kv.base import ALL_QUERIES, LayerContext, LayerResult
from tokenzip.kv.context import ReplayContext
from tokenzip.kv.methods.kvzip import KVzip
from tokenzip.method import register
from tokenzip.ops.attention import replay_attention_mass, replay_attention_max, self_replay_attention
from tokenzip.ops.topk import gather_tokens, keep_topk


class _ReplayDone(Exception):
    """Raised inside the replay once the last compressed layer is scored: later layers cannot change the scores."""


@register
@dataclass
class KVzipFast(KVzip, AutoRatioMethod):
    """KVzip's score (the largest attention an entry receives while the model re-reads its context; one top-k over
    all compressed layers) at a lower price, chosen by ``replay``:

    - ``"self"`` (default): no second pass. The query re-reading token ``t`` in KVzip's replay is the prefill's own
      query of ``t`` as long as only the local window shaped it (exactly so up to Gemma 3's first global layer),
      seen from ``Delta`` = context + instruction positions later: it attends to every original key through its
      query rotated by ``Delta`` more positions, and to the replayed keys before it as the prefill did. Computed
      from the prefill's queries: one ``N x 2N`` attention per compressed layer instead of a pass over the model.
      Later global layers are approximated the same way (their replay states have also read the original copy).
    - ``"full"``: KVzip's replay itself; with ``stop_early`` it stops after the last compressed layer (later
      layers cannot change the scores: the same entries are kept, cheaper where the last layers are not
      compressed, e.g. sliding-window ones). ``replay="full", stop_early=False`` is ``kvzip`` exactly.

    Kim et al., "KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction", 2025, arXiv 2505.23416;
    the ``"self"`` estimate is tokenzip's (not in the paper). With ``ratio="auto"`` each layer keeps the fewest
    top entries whose lost share of the reconstruction's attention stays within ``tolerance``.
    """

    name = "kvzip_fast"
    paper = "Kim et al. 2025, arXiv 2505.23416 (self-replay estimate: tokenzip)"
    default_tolerance = 0.15

    replay: str = "self"
    stop_early: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.replay not in ("self", "full"):
            raise TokenzipError(f"kvzip_fast: replay must be 'self' or 'full', got {self.replay!r}")

    def query_window(self) -> int:
        return ALL_QUERIES if self.replay == "self" else 0

    def prepare(self, replay: ReplayContext, contexts: list[LayerContext]) -> None:
        if self.replay == "full" and not self.stop_early and not self.auto:
            return super().prepare(replay, contexts)  # KVzip's own pass (and its memo)
        compute = self.self_replay_scores if self.replay == "self" else self.short_replay_scores
        if contexts and contexts[0].chunked:  # the newest chunk re-read: new entries every time, nothing to share
            scores = compute(replay, contexts)
        else:  # the same prefill compressed again (another ratio, or auto's tolerance): same scores, same price
            mass = self.auto or self.replay == "self"  # the self-replay has the mass at no cost: always computed
            key = (self.name, self.replay, self.stop_early, mass, self.prompt,
                   id(self.tokenizer or replay.tokenizer), tuple(ctx.layer_idx for ctx in contexts))
            scores = replay.memoized(key, lambda: compute(replay, contexts))
        for ctx in contexts:
            ctx.extra = {"kvzip": scores[ctx.layer_idx][0], "mass": scores[ctx.layer_idx][1]}

    def self_replay_scores(self, replay: ReplayContext, contexts: list[LayerContext]) -> dict[int, tuple]:
        """Per layer, (max, mean) attention of the prefill's queries re-reading the context from ``Delta`` later.

        The replay puts the re-read token ``j`` of ``input_ids`` (the context, or a chunked prefill's newest chunk)
        at ``seen + len(replay ids) - len(input_ids) + j``, and the prefill had it at ``seen - len(input_ids) + j``:
        ``Delta`` is the length of the replay ids (instruction + re-read tokens)."""
        delta = self.replay_ids(replay).shape[1]
        out = {}
        for ctx in contexts:
            queries = rereading_queries(ctx, self.name)
            out[ctx.layer_idx] = self_replay_attention(queries, ctx.keys, ctx.scaling, ctx.rotated(queries, delta),
                                                       ctx.valid_tokens())
        return out

    def short_replay_scores(self, replay: ReplayContext, contexts: list[LayerContext]) -> dict[int, tuple]:
        """KVzip's replay, stopped after the last compressed layer when ``stop_early``; the mean too for auto."""
        by_layer = {ctx.layer_idx: ctx for ctx in contexts}
        last = max(by_layer)
        out: dict[int, tuple] = {}

        def on_attention(module: Any, query: torch.Tensor, key: torch.Tensor) -> None:
            ctx = by_layer.get(module.layer_idx)
            if ctx is None:
                return
            best = replay_attention_max(query, key, ctx.scaling, ctx.n_tokens)
            mass = replay_attention_mass(query, key, ctx.scaling, ctx.n_tokens) if self.auto else None
            out[ctx.layer_idx] = (best, mass)
            if self.stop_early and ctx.layer_idx == last:
                raise _ReplayDone

        try:
            replay.replay(self.replay_ids(replay), on_attention)
        except _ReplayDone:
            pass
        return out

    def score_and_mass(self, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score(ctx), ctx.extra["mass"]

    def score(self, ctx: LayerContext) -> torch.Tensor:
        return KVzip.score(self, ctx)  # a chunked prefill: the running maximum over every replay an entry was held for

    def compress_model(self, contexts: list[LayerContext]) -> list[LayerResult]:
        if not self.auto:
            return super().compress_model(contexts)  # KVzip's one top-k over layers and heads
        results = []
        for ctx in contexts:
            scores = self.masked_scores(ctx)
            indices, valid = keep_topk(scores, self.auto_keep(ctx, scores, ctx.extra["mass"].float()))
            results.append(LayerResult(gather_tokens(ctx.keys, indices), gather_tokens(ctx.values, indices), valid,
                                       indices=indices))
        return results


def rereading_queries(ctx: LayerContext, name: str) -> torch.Tensor:
    """The prefill's queries of the re-read entries, ``(B, H_q, Q, D)``: every entry the layer holds after a whole
    prefill; after a chunk, the chunk's (the layer's last ``Q`` entries; fewer than the chunk's tokens where a
    layers method pruned them inside the model, and they sit at their original positions, so ``Delta`` holds)."""
    queries = ctx.queries
    if queries is None or queries.shape[2] > ctx.n_tokens or (not ctx.chunked and queries.shape[2] != ctx.n_tokens):
        raise RuntimeError(f"{name} scores with the prefill queries of every re-read entry; they were not captured "
                           "for this layer (it compresses after a prefill, not during decoding)")
    return queries
