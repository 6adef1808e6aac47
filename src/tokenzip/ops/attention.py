"""Scores from attention statistics: how much attention each token receives.

Every scorer returns a score per token where **higher means more important** (kept first).

KV cache: keys/values ``(B, H_kv, N, D)``, queries ``(B, H_q, W, D)``, scores ``(B, H_kv, N)`` (each GQA group
averaged, or its max taken). The observation window's attention, pooled (SnapKV, Li et al., 2024, arXiv 2404.14469),
or normalised by how many queries see each token (ZipCache, He et al., 2024, arXiv 2405.14256); attention received
from all causal queries (H2O, Zhang et al., 2023, arXiv 2306.14048); the expected attention of future queries in
closed form (Devoto et al., 2025, arXiv 2510.00636); the attention of KVzip's context reconstruction (Kim et al.,
2025, arXiv 2505.23416), replayed or estimated from the prefill alone; non-causal chunked attention (Compactor,
Chari & Van Durme, 2025, arXiv 2507.08143).

Layers stage: the attention of the [CLS] row (EViT, Liang et al., 2022, arXiv 2202.07800; VTC-CLS, Wang et al.,
2024, arXiv 2412.05819) or of the last tokens (FastV, Chen et al., 2024, arXiv 2403.06764), full attention
probabilities, and Weighted PageRank on the attention graph (Zero-TPrune, Wang et al., 2024, arXiv 2305.17328).

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from tokenzip.ops.rope import rotate_half


def group_mean(x: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
    """Average a per-query-head tensor ``(B, H_q, ...)`` over each GQA group -> ``(B, H_kv, ...)``."""
    b, hq = x.shape[:2]
    return x.view(b, n_kv_heads, hq // n_kv_heads, *x.shape[2:]).mean(2)


def window_attention(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, key_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention of the last ``W`` queries over all ``N`` keys: ``(B, H_q, W, N)``.

    The queries are the last ``W`` positions of the sequence, so query ``i`` sees keys up to
    ``N - W + i`` (causal). ``key_valid`` ``(B, N)`` masks padding keys. Computed in float32.
    """
    b, hq, w, _ = queries.shape
    hkv, n = keys.shape[1], keys.shape[2]
    k = keys.float().repeat_interleave(hq // hkv, dim=1)
    logits = torch.matmul(queries.float(), k.transpose(-1, -2)) * scaling
    causal = torch.arange(n, device=keys.device)[None, :] <= (n - w + torch.arange(w, device=keys.device))[:, None]
    mask = causal[None, None]
    if key_valid is not None:
        mask = mask & key_valid[:, None, None, :]
    logits = logits.masked_fill(~mask, float("-inf"))
    return torch.softmax(logits, dim=-1).nan_to_num(0.0)


def observation_window_scores(attn: torch.Tensor, n_kv_heads: int, kernel: int = 5,
                              key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """SnapKV (Li et al., 2024, arXiv 2404.14469): attention from the observation window, pooled.

    Mean over the window's queries, then 1-D average pooling over positions (``kernel`` wide, so
    neighbours of important tokens are kept with them), then mean over each GQA group. The average
    runs over the valid keys in reach only (``key_valid`` ``(B, N)``), so a left-padded row scores
    exactly as the row alone.
    """
    scores = attn.mean(dim=2)  # (B, H_q, N)
    if kernel > 1:
        b, h, n = scores.shape
        valid = torch.ones(b, 1, n, device=scores.device) if key_valid is None else key_valid[:, None, :].float()
        scores = scores * valid
        total = _window_sum(scores.reshape(b * h, 1, n), kernel).reshape(b, h, n)
        count = _window_sum(valid, kernel).clamp_min(1.0)
        scores = total / count * valid  # padding scores nothing
    return group_mean(scores, n_kv_heads)


def _window_sum(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Sum over a centred window of ``kernel`` positions along the last axis of ``(R, 1, N)``."""
    return F.avg_pool1d(x, kernel, stride=1, padding=kernel // 2, count_include_pad=True) * kernel


def normalized_attention(attn: torch.Tensor) -> torch.Tensor:
    """ZipCache (He et al., 2024, arXiv 2405.14256): attention received divided by how many of the
    window's queries can see each token (causal), so recent tokens are not favoured. ``attn``
    ``(B, H, W, N)`` from :func:`window_attention` -> ``(B, H, N)``."""
    w, n = attn.shape[-2], attn.shape[-1]
    seen_by = (n - torch.arange(n, device=attn.device)).clamp(max=w).float()
    return attn.sum(dim=2) / seen_by


def received_attention(queries: torch.Tensor, keys: torch.Tensor, scaling: float, chunk: int = 256) -> torch.Tensor:
    """H2O (Zhang et al., 2023, arXiv 2306.14048): attention each key receives, summed over all causal queries.

    ``queries`` are the ``N`` queries of the prefill itself, ``(B, H_q, N, D)``; returns ``(B, H_q, N)``.
    Computed in chunks of queries so the ``N x N`` matrix never exists at once.
    """
    b, hq, n, _ = queries.shape
    k = keys.float().repeat_interleave(hq // keys.shape[1], dim=1)
    total = torch.zeros(b, hq, k.shape[2], device=keys.device)
    pos_k = torch.arange(k.shape[2], device=keys.device)
    offset = k.shape[2] - n
    for start in range(0, n, chunk):
        q = queries[:, :, start : start + chunk].float()
        logits = q @ k.transpose(-1, -2) * scaling
        pos_q = offset + start + torch.arange(q.shape[2], device=keys.device)
        logits = logits.masked_fill(pos_k[None, :] > pos_q[:, None], float("-inf"))
        total += torch.softmax(logits, dim=-1).sum(dim=2)
    return total


def expected_attention_scores(
    queries_pre: torch.Tensor,
    keys: torch.Tensor,
    cos_future: torch.Tensor,
    sin_future: torch.Tensor,
    scaling: float,
    cov_weight: float = 1.0,
) -> torch.Tensor:
    """Expected attention (Devoto et al., 2025, arXiv 2510.00636): attention of *future* queries, in closed form.

    Future queries are modelled as Gaussian ``N(mu, Sigma)`` (mean and covariance of recent
    pre-RoPE queries, per head) rotated by RoPE at the next positions; the rotation is averaged over
    those positions: ``R = mean_t R(t)``. For a key ``k``, ``E[exp(q.k s)] = exp(mu' k s + s^2/2
    k' Sigma' k)`` with ``mu' = R mu``, ``Sigma' = R Sigma R^T``. Scores are the log of that
    (unnormalised expected attention), averaged over each GQA group: ``(B, H_kv, N)``.

    ``queries_pre`` ``(B, H_q, W, D)``; ``cos_future``/``sin_future`` ``(T, D)``.
    """
    q = queries_pre.float()
    b, hq, w, d = q.shape
    hkv = keys.shape[1]
    mu = q.mean(dim=2)  # (B, H_q, D)
    centred = q - mu[:, :, None]
    sigma = centred.transpose(-1, -2) @ centred / max(w - 1, 1)  # (B, H_q, D, D)
    # Average rotation matrix over future positions: R x = x*cos + rotate_half(x)*sin, averaged.
    eye = torch.eye(d, device=q.device)
    cos_m, sin_m = cos_future.float().mean(0), sin_future.float().mean(0)
    rot = eye * cos_m[None, :] + rotate_half(eye) * sin_m[None, :]  # rows: R applied to basis vectors
    rot = rot.T  # R such that R @ x == x*cos + rotate_half(x)*sin
    mu_r = mu @ rot.T
    sigma_r = rot @ sigma @ rot.T
    k = keys.float().repeat_interleave(hq // hkv, dim=1)  # (B, H_q, N, D)
    mean_term = (k @ mu_r[..., None]).squeeze(-1) * scaling
    var_term = 0.5 * scaling**2 * ((k @ sigma_r) * k).sum(-1)
    return group_mean(mean_term + cov_weight * var_term, hkv)


def replay_attention_max(queries: torch.Tensor, keys: torch.Tensor, scaling: float, n_context: int,
                         chunk: int = 256) -> torch.Tensor:
    """KVzip (Kim et al., 2025, arXiv 2505.23416): max attention each context entry receives while the
    model reconstructs the context.

    ``keys`` ``(B, H_kv, S + R, D)`` are the ``S`` stored entries (the first ``n_context`` of them are
    scored) followed by the ``R`` replay tokens, whose ``queries`` ``(B, H_q, R, D)`` attend causally.
    Returns ``(B, H_kv, n_context)``: max over the replay queries and over each GQA group.
    """
    best = None
    for log_attn in _replay_log_attention(queries, keys, scaling, n_context, chunk):
        top = log_attn.amax(dim=2)  # over the group's heads and the chunk's queries at once
        best = top if best is None else torch.maximum(best, top)
    if best is None:  # no replay query
        return keys.new_zeros(keys.shape[0], keys.shape[1], n_context, dtype=torch.float32)
    return best.exp()


def replay_attention_mass(queries: torch.Tensor, keys: torch.Tensor, scaling: float, n_context: int,
                          chunk: int = 256) -> torch.Tensor:
    """The mean attention each context entry receives from KVzip's replay queries (same inputs as
    :func:`replay_attention_max`), averaged over each GQA group: ``(B, H_kv, n_context)``. It is the share of the
    reconstruction's attention an entry holds, what ``ratio="auto"`` weighs removal by."""
    hq, r = queries.shape[1], queries.shape[2]
    total = keys.new_zeros(keys.shape[0], keys.shape[1], n_context, dtype=torch.float32)
    for log_attn in _replay_log_attention(queries, keys, scaling, n_context, chunk):
        total += log_attn.exp().sum(dim=2)
    return total / (max(r, 1) * (hq // keys.shape[1]))


def _replay_log_attention(queries: torch.Tensor, keys: torch.Tensor, scaling: float, n_context: int, chunk: int
                          ) -> Iterator[torch.Tensor]:
    """The replay queries' causal log-attention on the first ``n_context`` keys, ``chunk`` queries at a time:
    ``(B, H_kv, G x <= chunk, n_context)`` per chunk, each GQA group's ``G`` heads stacked along the query axis.

    The probabilities are never materialized over the whole row: each query's log-normalizer (logsumexp over the
    keys it sees) is subtracted from its logits on the context. A chunk's queries see every stored key and the
    replay keys up to themselves, so the keys after the chunk are not multiplied at all and only the chunk's own
    ``chunk x chunk`` block is masked."""
    hq, r = queries.shape[1], queries.shape[2]
    hkv = keys.shape[1]
    s = keys.shape[2] - r
    k = keys.float()
    for start in range(0, r, chunk):
        stop = min(start + chunk, r)
        logits = _stacked_queries(queries, start, stop, hkv, scaling) @ k[:, :, : s + stop].transpose(-1, -2)
        own = torch.arange(stop - start, device=keys.device)
        future = (own[None, :] > own[:, None]).repeat(hq // hkv, 1)  # (G x C, C): a query's later replay keys
        logits[..., s + start :].masked_fill_(future, float("-inf"))
        yield logits[..., :n_context] - torch.logsumexp(logits, dim=-1, keepdim=True)


def _stacked_queries(queries: torch.Tensor, start: int, stop: int, n_kv_heads: int, scaling: float) -> torch.Tensor:
    """Queries ``start:stop`` of ``(B, H_q, Q, D)``, scaled, with each GQA group's heads stacked along the query axis:
    ``(B, H_kv, G x C, D)``, so one product with the group's keys ``(B, H_kv, N, D)`` scores them all (no copy of
    the keys per query head)."""
    b, hq, _, d = queries.shape
    return (queries[:, :, start:stop].float() * scaling).reshape(b, n_kv_heads, hq // n_kv_heads * (stop - start), d)


def self_replay_attention(queries: torch.Tensor, keys: torch.Tensor, scaling: float, shifted: torch.Tensor,
                          valid: torch.Tensor | None = None, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """KVzip's reconstruction attention estimated from the prefill alone (no second pass).

    In KVzip's replay (Kim et al., 2025, arXiv 2505.23416) the context is fed again after itself. The query that
    re-reads token ``t`` sees every original key from ``Delta`` positions later, and the replayed keys before it
    at their usual distances. Its hidden state up to the first global layer is the prefill's own (same local
    window), so its query is the prefill's ``q_t`` rotated by ``Delta`` more positions (``shifted``). The row
    of ``q_t`` is then: logits against every original key through ``shifted``, and the prefill's causal logits
    against the re-read keys ``j <= t``, under one softmax. Scores are the attention on the original keys.

    ``keys`` ``(B, H_kv, N, D)``; ``queries``, ``shifted`` ``(B, H_q, Q, D)`` are the prefill's queries of the last
    ``Q <= N`` keys (post-RoPE at the prefill positions, and rotated by ``Delta`` more): ``Q = N`` re-reads the
    whole context; ``Q < N`` is a chunked prefill's newest chunk re-read after the entries kept from earlier
    chunks (KVzip's chunked scoring: only the chunk is replayed). ``valid`` ``(B, N)`` masks padding. Returns
    ``(max, mean)``, each ``(B, H_kv, N)``: the largest attention any re-reading query pays each key (max over the
    GQA group, as KVzip) and the mean over the re-reading queries (the attention mass, averaged over the group).
    """
    b, hq, q, _ = queries.shape
    hkv, n = keys.shape[1], keys.shape[2]
    group = hq // hkv
    past = n - q  # entries before the re-read ones
    k = keys.float()
    read = torch.ones(b, q, dtype=torch.bool, device=keys.device) if valid is None else valid.bool()[:, past:]
    best = torch.zeros(b, hkv, n, device=keys.device)
    total = torch.zeros(b, hkv, n, device=keys.device)
    positions = torch.arange(q, device=keys.device)
    for start in range(0, q, chunk):
        stop = min(start + chunk, q)
        original = _stacked_queries(shifted, start, stop, hkv, scaling) @ k.transpose(-1, -2)  # (B, H_kv, G x C, N)
        if valid is not None:
            original.masked_fill_(~valid.bool()[:, None, None, :], float("-inf"))
        own = _stacked_queries(queries, start, stop, hkv, scaling) @ k[:, :, past : past + stop].transpose(-1, -2)
        sees = (positions[None, :stop] <= positions[start:stop, None]).repeat(group, 1)[None] & read[:, None, :stop]
        own.masked_fill_(~sees[:, None], float("-inf"))
        norm = torch.logaddexp(torch.logsumexp(original, dim=-1, keepdim=True),
                               torch.logsumexp(own, dim=-1, keepdim=True))
        padded = ~read[:, start:stop].repeat(1, group)  # (B, G x C): queries that are padding score nothing
        attn = (original - norm.masked_fill(padded[:, None, :, None], float("inf"))).exp()
        best = torch.maximum(best, attn.amax(dim=2))
        total += attn.sum(dim=2)
    return best, total / (read.sum(-1).clamp_min(1)[:, None, None] * group)


def noncausal_chunk_attention(queries: torch.Tensor, keys: torch.Tensor, scaling: float, chunk: int = 256,
                              valid: torch.Tensor | None = None) -> torch.Tensor:
    """Compactor's non-causal attention (Chari & Van Durme, 2025, arXiv 2507.08143): the context is cut into chunks of
    ``chunk`` tokens; inside a chunk every query attends to every key, before and after it; a key's score is the
    attention it receives, summed over its chunk's queries.

    ``queries`` ``(B, H_q, N, D)`` are the prefill's own queries, aligned with ``keys`` ``(B, H_kv, N, D)``;
    ``valid`` ``(B, N)`` masks padding (as keys and as queries). Returns ``(B, H_q, N)``.
    """
    b, hq, n, d = queries.shape
    k = keys.float().repeat_interleave(hq // keys.shape[1], dim=1)
    pad = (-n) % chunk
    ok = torch.ones(b, n, dtype=torch.bool, device=keys.device) if valid is None else valid.bool()
    q = F.pad(queries.float(), (0, 0, 0, pad)).view(b, hq, -1, chunk, d)
    k = F.pad(k, (0, 0, 0, pad)).view(b, hq, -1, chunk, d)
    ok = F.pad(ok, (0, pad)).view(b, 1, -1, chunk)
    logits = (q @ k.transpose(-1, -2) * scaling).masked_fill(~ok[..., None, :], float("-inf"))
    attn = torch.softmax(logits, dim=-1).nan_to_num(0.0) * ok[..., :, None]
    return attn.sum(dim=-2).reshape(b, hq, -1)[..., :n]


# ---------------------------------------------------------------------------------------------
# Layers stage scorers (in-model token reduction). Queries/keys as the attention function sees
# them: (B, H, N, D) (keys may have fewer heads: GQA); ``bias`` is an SDPA mask (bool, True =
# attend, or additive float) broadcastable to (B, H, Q, N), or None. Token scores are (B, N).
# ---------------------------------------------------------------------------------------------


def _rows_logits(queries: torch.Tensor, keys: torch.Tensor, scaling: float, bias: torch.Tensor | None) -> torch.Tensor:
    """Attention logits of ``queries`` (B, H, Q, D) over ``keys``, with ``bias`` rows aligned to them."""
    hq, hk = queries.shape[1], keys.shape[1]
    k = keys.float().repeat_interleave(hq // hk, dim=1) if hq != hk else keys.float()
    logits = queries.float() @ k.transpose(-1, -2) * scaling
    if bias is not None:
        if bias.dtype == torch.bool:
            logits = logits.masked_fill(~bias, float("-inf"))
        else:
            logits = logits + bias.float()
    return logits


def _bias_rows(bias: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    if bias is None or bias.shape[-2] == 1:
        return bias
    return bias[..., rows, :]


def attention_probabilities(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Full softmax attention (B, H, N, N), in float32; rows with no visible key are all zero."""
    return torch.softmax(_rows_logits(queries, keys, scaling, bias), dim=-1).nan_to_num(0.0)


def cls_attention(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, bias: torch.Tensor | None = None, index: int = 0
) -> torch.Tensor:
    """Attention the [CLS] token pays to every token, averaged over heads: (B, N).

    EViT (Liang et al., 2022, arXiv 2202.07800) and VTC-CLS (Wang et al., 2024, arXiv 2412.05819)
    keep the tokens [CLS] attends to most. Only the [CLS] row is computed (B x H x 1 x N), so the
    layer itself keeps its fused SDPA kernel.
    """
    rows = slice(index, index + 1)
    logits = _rows_logits(queries[:, :, rows], keys, scaling, _bias_rows(bias, rows))
    return torch.softmax(logits, dim=-1).nan_to_num(0.0).mean(dim=(1, 2))


def last_tokens_attention(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, bias: torch.Tensor | None = None, window: int = 1
) -> torch.Tensor:
    """Attention the last ``window`` queries pay to every token, averaged over heads and queries: (B, N).

    FastV (Chen et al., 2024, arXiv 2403.06764) ranks image tokens by the last token's attention.
    Only those ``window`` rows are computed. ``bias`` must already hold the causal/padding mask rows.
    """
    rows = slice(queries.shape[2] - window, queries.shape[2])
    logits = _rows_logits(queries[:, :, rows], keys, scaling, _bias_rows(bias, rows))
    return torch.softmax(logits, dim=-1).nan_to_num(0.0).mean(dim=(1, 2))


def weighted_pagerank(attention: torch.Tensor, valid: torch.Tensor | None = None, iterations: int = 30) -> torch.Tensor:
    """Zero-TPrune's importance (Wang et al., 2024, arXiv 2305.17328): Weighted PageRank on the attention graph.

    A token is important when important tokens attend to it: ``s <- A^T s`` with ``A`` the attention
    probabilities (B, H, N, N) averaged over heads, starting from the uniform distribution over valid
    tokens. Returns the scores (B, N) after ``iterations`` steps (they sum to 1 per row).
    """
    a = attention.float().mean(dim=1)  # (B, N, N): row i = how token i distributes its attention
    b, n, _ = a.shape
    if valid is None:
        valid = torch.ones(b, n, dtype=torch.bool, device=a.device)
    s = valid.float() / valid.float().sum(-1, keepdim=True).clamp(min=1)
    for _ in range(iterations):
        s = (a.transpose(1, 2) @ s[..., None]).squeeze(-1)
        s = s / s.sum(-1, keepdim=True).clamp(min=1e-12)
    return s
