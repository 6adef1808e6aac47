"""Scores from the keys, values or hidden states themselves, without attention weights.

KV cache: keys/values ``(B, H_kv, N, D)`` -> ``(B, H_kv, N)``, higher = kept first. Key norms (Knorm, Devoto et
al., 2024, arXiv 2406.11430), dissimilarity to the mean key (KeyDiff, Park et al., 2025, arXiv 2504.15364), value
norms, positions (StreamingLLM's sinks and recency, Xiao et al., 2024, arXiv 2309.17453), lag-relative spread
(LagKV, Liang et al., 2025, arXiv 2504.04704), statistical leverage with a Gaussian sketch and z-scores for blending
(Compactor, Chari & Van Durme, 2025, arXiv 2507.08143), and CUR row norms (CurDKV, Sengupta et al., 2025, arXiv
2509.15038).

Hidden states ``(B, N, C)`` -> ``(B, N)`` (layers stage): the energy of a token's neighbourhood (PiToMe, Tran et
al., 2024, arXiv 2405.16148; high = crowded = safe to merge) and key L1 norms (DART's pivots, Wen et al., 2025,
arXiv 2502.11494).

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def key_norm_scores(keys: torch.Tensor) -> torch.Tensor:
    """Knorm (Devoto et al., 2024, arXiv 2406.11430): low key L2 norm <-> high attention; score = -||k||."""
    return -keys.float().norm(dim=-1)


def key_diversity_scores(keys: torch.Tensor) -> torch.Tensor:
    """KeyDiff (Park et al., 2025, arXiv 2504.15364): keys least similar to the mean key matter most.

    score = -cos(k_i, mean_j k_j), per KV head.
    """
    k = keys.float()
    anchor = k.mean(dim=2, keepdim=True)
    return -F.cosine_similarity(k, anchor, dim=-1)


def value_norm(values: torch.Tensor) -> torch.Tensor:
    """``||v||`` per token: ``(B, H_kv, N)``."""
    return values.float().norm(dim=-1)


def sink_recent_scores(positions: torch.Tensor, sinks: int) -> torch.Tensor:
    """StreamingLLM (Xiao et al., 2024, arXiv 2309.17453): attention sinks first, then recency.

    ``positions`` ``(B, N)`` count real tokens from 0 (padding may be negative). The first ``sinks``
    tokens score highest, the rest by position, so top-k keeps the sinks and the most recent tokens.
    """
    n = positions.shape[-1]
    return torch.where((positions >= 0) & (positions < sinks), torch.full_like(positions, 2 * n), positions).float()


def lag_relative_scores(x: torch.Tensor, lag: int) -> torch.Tensor:
    """LagKV (Liang et al., 2025, arXiv 2504.04704): how much each token stands out against the next partition.

    ``x`` ``(..., n, D)``: keys or values of real tokens, ``n`` a multiple of ``lag``. For each partition ``p`` of
    ``lag`` tokens but the last, with ``lo``/``hi`` the per-channel min/max over partition ``p + 1`` (its lag
    reference): ``x_bar = (x - lo) / (hi - lo)`` (the range clamped to >= 1e-6), ``s = std over the D channels of
    x_bar`` (unbiased), score = ``softmax(s)`` over the partition's tokens. Returns ``(..., n - lag)``.
    """
    parts = x.float().unflatten(-2, (-1, lag))  # (..., P, lag, D)
    reference = parts[..., 1:, :, :]
    low = reference.amin(-2, keepdim=True)
    span = (reference.amax(-2, keepdim=True) - low).clamp_min(1e-6)
    spread = ((parts[..., :-1, :, :] - low) / span).std(-1)  # (..., P - 1, lag)
    return spread.softmax(-1).flatten(-2)


def lagkv_priority(keys: torch.Tensor, values: torch.Tensor, sinks: int, lag: int) -> torch.Tensor:
    """LagKV's keep order for one unpadded sequence: keys/values ``(..., n, D)`` -> ``(..., n)``, higher kept first.

    After the first ``sinks`` tokens the sequence is cut into partitions of ``lag``; the last full partition and
    the remainder after it (fewer than ``lag`` tokens) form the tail, which has no reference. A token of a scored
    partition gets ``r + l / 4``, where ``l = lag_relative_scores(keys) + lag_relative_scores(values)`` (in (0, 2])
    and ``r`` (0 .. lag-1) is the rank of ``l`` inside its partition: a top-k over the whole sequence then keeps
    the same number of tokens from every partition (the paper's per-partition top-k), the extra ones going to the
    higher ``l``. The tail scores ``lag + 1 + j / len(tail)`` (``j``: its index, the most recent highest) and the
    sinks ``lag + 3``: both are kept whenever the budget holds them (otherwise the sinks, then the most recent).
    """
    n = keys.shape[-2]
    s = min(sinks, n)
    parts = (n - s) // lag
    scored = max(parts - 1, 0) * lag  # tokens s .. s + scored have a reference partition after them
    tail = n - s - scored
    priority = keys.new_zeros(*keys.shape[:-2], n, dtype=torch.float32)
    priority[..., :s] = lag + 3.0
    priority[..., s + scored :] = lag + 1.0 + torch.arange(tail, device=keys.device) / max(tail, 1)
    if scored:
        span = slice(s, s + scored + lag)  # the scored partitions and their last reference
        lag_score = lag_relative_scores(keys[..., span, :], lag) + lag_relative_scores(values[..., span, :], lag)
        ranks = lag_score.unflatten(-1, (-1, lag)).argsort(-1).argsort(-1).flatten(-2)
        priority[..., s : s + scored] = ranks + lag_score / 4
    return priority


def zscore(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Standardise ``x`` ``(B, H, N)`` per batch row over its valid entries (all heads together); invalid -> 0."""
    x = x.float()
    w = torch.ones_like(x) if valid is None else valid.expand_as(x).float()
    count = w.sum(dim=(1, 2), keepdim=True).clamp_min(1)
    mean = (x * w).sum(dim=(1, 2), keepdim=True) / count
    std = (((x - mean) * w) ** 2).sum(dim=(1, 2), keepdim=True).div(count).sqrt().clamp_min(1e-6)
    return (x - mean) / std * w


def gaussian_sketch(d: int, k: int, seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """A fixed ``(d, k)`` Gaussian sketch with entries N(0, 1/k) (seeded: the same keys give the same scores)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(d, k, generator=g) / k**0.5).to(device)


def leverage_scores(x: torch.Tensor, valid: torch.Tensor | None = None, sketch: int = 48, ridge: float = 1e-4,
                    seed: int = 0) -> torch.Tensor:
    """Statistical leverage of each row of ``x`` ``(B, H, N, D)`` per head: ``l_i = x_i^T (X^T X)^-1 x_i`` for the
    centred rows, the diagonal of the hat matrix. ``0 <= l_i <= 1`` and the ``l_i`` sum to the rank: a row far
    outside the span of the others has ``l ~ 1``; rows that repeat one direction share it.

    Compactor (Chari & Van Durme, 2025, arXiv 2507.08143) approximates them with a right Gaussian sketch,
    ``X -> X Phi`` with ``Phi`` ``(D, sketch)``; ``sketch=0`` (or ``>= D``) computes them exactly. ``ridge``,
    relative to the mean diagonal of ``X^T X``, keeps the solve stable. ``valid`` ``(B, 1 or H, N)`` leaves padding
    out of the mean and the Gram matrix (its scores are 0). Returns ``(B, H, N)``.
    """
    x = x.float()
    w = torch.ones(*x.shape[:3], device=x.device) if valid is None else valid.expand(*x.shape[:3]).float()
    mean = (x * w[..., None]).sum(2, keepdim=True) / w.sum(-1)[..., None, None].clamp_min(1)
    x = (x - mean) * w[..., None]
    if 0 < sketch < x.shape[-1]:
        x = x @ gaussian_sketch(x.shape[-1], sketch, seed, x.device)
    gram = x.transpose(-1, -2) @ x
    k = gram.shape[-1]
    scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[..., None, None]
    chol = torch.linalg.cholesky(gram + ridge * scale * torch.eye(k, device=x.device))
    solved = torch.cholesky_solve(x.transpose(-1, -2), chol)  # (X^T X)^-1 X^T
    return (x * solved.transpose(-1, -2)).sum(-1).clamp_min(0) * w


def cur_norm_scores(keys: torch.Tensor, values: torch.Tensor, window: int = 16) -> torch.Tensor:
    """CurDKV's fast proxy as in kvpress's CURPress (Sengupta et al., 2025, arXiv 2509.15038): squared row norms of
    keys and of values, each normalised within windows of ``window`` tokens, multiplied. ``(B, H, N)``."""

    def local(x: torch.Tensor) -> torch.Tensor:
        b, h, n = x.shape
        padded = F.pad(x, (0, (-n) % window)).view(b, h, -1, window)
        return (padded / padded.sum(-1, keepdim=True).clamp_min(1e-12)).view(b, h, -1)[..., :n]

    return local(keys.float().pow(2).sum(-1)) * local(values.float().pow(2).sum(-1))


def energy_scores(metric: torch.Tensor, valid: torch.Tensor, margin: float, alpha: float = 1.0) -> torch.Tensor:
    """PiToMe's energy (Tran et al., 2024, arXiv 2405.16148): how crowded each token's neighbourhood is.

    ``E_i = mean_j f(cos(x_i, x_j))`` over valid tokens ``j``, with ``f(c) = c - m`` for ``c >= m``
    and ``alpha (exp(c - m) - 1)`` below the margin ``m`` (an ELU). High energy = many similar
    tokens = safe to merge; low energy = isolated, informative, protected. Returns (B, N).
    """
    unit = F.normalize(metric.float(), dim=-1)
    sim = unit @ unit.transpose(1, 2)
    contribution = F.elu(sim - margin, alpha=alpha) * valid[:, None, :]
    return contribution.sum(-1) / valid.sum(-1, keepdim=True).clamp(min=1)


def key_l1_norm(keys: torch.Tensor) -> torch.Tensor:
    """L1 norm of each token's key over all heads and channels: (B, H, N, D) -> (B, N) (DART's pivot criterion)."""
    return keys.float().abs().sum(dim=(1, 3))
