"""KVzip: score cached entries by how much the model needs them to reconstruct its context."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.kv.base import KVMethod, LayerContext, LayerResult
from tokenzip.kv.context import ReplayContext
from tokenzip.method import register
from tokenzip.ops.attention import replay_attention_max
from tokenzip.ops.topk import gather_tokens, keep_topk_global


@register
@dataclass
class KVzip(KVMethod):
    """After prefill, feed "repeat the previous context" followed by the context again; an entry's score is
    the largest attention any reconstruction query pays it (max over the GQA group). Entries are kept by
    one top-k over all compressed layers and heads, so layers get different budgets.

    Kim et al., "KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction", 2025, arXiv
    2505.23416. Costs one extra forward pass over the context (attending to twice its length). The
    instruction is tokenized with ``tokenizer`` (``tz.kv.answer``/``prefill`` pass theirs); without one the
    context alone is replayed.

    Chunked prefill (``chunk_size``): the paper's chunked scoring, in bounded memory. After each chunk the
    instruction and that chunk are replayed against what the cache holds (the kept entries and the chunk's),
    an entry's score is its largest reconstruction attention over every replay it was held for (carried
    with it), and each layer keeps its own budget, uniform over heads (one top-k over all layers would let
    a layer outgrow budget + chunk). The extra pass costs ``(chunk + instruction) x (budget + 2 chunk)``
    attention per chunk instead of ``N x 2N``.
    """

    name = "kvzip"
    paper = "Kim et al. 2025, arXiv 2505.23416"
    whole_model = True
    chunkable = True
    from_code = ("tokenizer",)  # an object: no spec text can hold it

    prompt: str = "\n\nRepeat the previous context exactly.\n"
    tokenizer: Any = None

    def prepare(self, replay: ReplayContext, contexts: list[LayerContext]) -> None:
        if contexts and contexts[0].chunked:  # one reconstruction of the newest chunk, nothing to share
            scores = self.reconstruction_scores(replay, contexts)
        else:  # the same prefill compressed again (another ratio): the same reconstruction, at the same price
            key = ("kvzip", self.prompt, id(self.tokenizer or replay.tokenizer), tuple(c.layer_idx for c in contexts))
            scores = replay.memoized(key, lambda: self.reconstruction_scores(replay, contexts))
        for ctx in contexts:
            ctx.extra = {"kvzip": scores[ctx.layer_idx]}

    def replay_ids(self, replay: ReplayContext) -> torch.Tensor:
        """The reconstruction input: the instruction, then the context (a chunked prefill: the newest chunk)
        again, without its BOS."""
        ids = replay.input_ids
        if replay.bos_token_id is not None and bool((ids[:, 0] == replay.bos_token_id).all()):
            ids = ids[:, 1:]
        tokenizer = self.tokenizer or replay.tokenizer
        if tokenizer is not None:
            prompt = tokenizer(self.prompt, add_special_tokens=False, return_tensors="pt").input_ids.to(ids.device)
            ids = torch.cat([prompt.expand(ids.shape[0], -1), ids], dim=1)
        else:
            warnings.warn(f"{self.name}: no tokenizer given; the context is re-read without the instruction",
                          stacklevel=4)
        return ids

    def reconstruction_scores(self, replay: ReplayContext, contexts: list[LayerContext]) -> dict[int, torch.Tensor]:
        """Replay instruction + context after the prefill; per layer, each entry's largest attention."""
        ids = self.replay_ids(replay)
        by_layer = {ctx.layer_idx: ctx for ctx in contexts}
        scores: dict[int, torch.Tensor] = {}

        def on_attention(module: Any, query: torch.Tensor, key: torch.Tensor) -> None:
            ctx = by_layer.get(module.layer_idx)
            if ctx is not None:
                scores[ctx.layer_idx] = replay_attention_max(query, key, ctx.scaling, ctx.n_tokens)

        replay.replay(ids, on_attention)
        return scores

    def score(self, ctx: LayerContext) -> torch.Tensor:
        scores = ctx.extra["kvzip"]
        return scores if ctx.carried is None else torch.maximum(scores, ctx.carried)

    def carry(self, ctx: LayerContext) -> torch.Tensor | None:
        return self.score(ctx) if ctx.chunked else None

    def compress_model(self, contexts: list[LayerContext]) -> list[LayerResult]:
        if contexts and contexts[0].chunked:  # a budget per layer: no layer may outgrow budget + chunk
            return [self.compress_layer(ctx) for ctx in contexts]
        scores = [self.masked_scores(ctx) for ctx in contexts]
        keeps = [self.keep_counts(ctx) for ctx in contexts]
        results = []
        for ctx, (indices, valid) in zip(contexts, keep_topk_global(scores, keeps)):
            results.append(LayerResult(gather_tokens(ctx.keys, indices), gather_tokens(ctx.values, indices), valid,
                                       indices=indices))
        return results
