"""Expected attention: score tokens by the attention *future* queries are expected to pay them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.attention import expected_attention_scores
from tokenzip.ops.rope import unrotate


@register
@dataclass
class ExpectedAttention(KVMethod):
    """Model future queries as a Gaussian fitted to the last ``window_size`` pre-RoPE queries, rotate it
    by RoPE averaged over the next ``n_future`` positions, and score each key by its expected attention
    logit in closed form, plus ``log ||v||``; the first ``sinks`` tokens are kept.

    Devoto et al., "Expected Attention: KV Cache Compression by Estimating Attention from Future Queries
    Distribution", 2025, arXiv 2510.00636. Query-agnostic: it does not need the question.
    The covariance term (``use_covariance``) is off by default: on Gemma 3 270M it made even query-aware
    needle retrieval fail on every sample we tried (the mean term alone retrieves them); see
    benchmarks/kv-gemma-3-270m.md.
    Chunked prefill: the Gaussian is fitted to each chunk's last ``window_size`` queries and the future
    positions start after the tokens seen so far; the kept entries and the chunk's are scored together.
    """

    name = "expected_attention"
    paper = "Devoto et al. 2025, arXiv 2510.00636"
    chunkable = True

    bounds = {"window_size": (1, None), "n_future": (1, None), "sinks": (0, None)}

    window_size: int = 64
    n_future: int = 512
    sinks: int = 4
    use_covariance: bool = False
    use_value_norm: bool = True

    def query_window(self) -> int:
        return self.window_size

    def score(self, ctx: LayerContext) -> torch.Tensor:
        if ctx.queries is None:
            raise RuntimeError("expected_attention needs the last prefill queries; they were not captured")
        rows = []
        lengths = ctx.real_lengths().tolist()
        w = ctx.queries.shape[2]
        device = ctx.keys.device
        for b, n_seen in enumerate(ctx.seen_lengths().tolist()):  # positions: the tokens seen, held or not
            q_pos = (n_seen - w + torch.arange(w, device=device)).clamp_min(0)[None]
            cos, sin = ctx.adapter.rotary(ctx.layer_idx, q_pos, ctx.queries)
            q_pre = unrotate(ctx.queries[b : b + 1].float(), cos[:, None].float(), sin[:, None].float())
            future = (n_seen + torch.arange(self.n_future, device=device))[None]
            cos_f, sin_f = ctx.adapter.rotary(ctx.layer_idx, future, ctx.queries)
            rows.append(expected_attention_scores(q_pre, ctx.keys[b : b + 1], cos_f[0], sin_f[0], ctx.scaling,
                                                  cov_weight=1.0 if self.use_covariance else 0.0))
        scores = torch.cat(rows)
        if self.use_value_norm:
            scores = scores + ctx.values.float().norm(dim=-1).clamp_min(1e-6).log()
        n = scores.shape[-1]
        for b, n_real in enumerate(lengths):
            scores[b, :, n - n_real : n - n_real + self.sinks] = float("inf")
        return scores
