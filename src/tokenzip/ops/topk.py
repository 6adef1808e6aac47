"""Top-k keep over token tensors: which entries stay, under which budget.

KV cache (scores ``(B, H, N)``, higher = keep; tokens ``(B, H, N, D)``): top-k with a per-row budget, head-adaptive
budgets (Ada-KV, Feng et al., 2024, arXiv 2407.11550), one budget over several layers (KVzip's, Kim et al., 2025,
arXiv 2505.23416), one set of positions for every layer and head (what an engine whose cache cells hold one
position for all layers, such as llama.cpp, can evict), the smallest budget whose estimated loss stays within a
tolerance (``ratio="auto"``), budgets shrinking with depth (PyramidKV, Cai et al., 2024, arXiv 2406.02069) and
gathering the kept entries.

Hidden states (layers stage; scores and keep masks ``(B, N)``, per-row counts ``(B,)``): top-k pruning of the lowest
scores (what EViT, FastV and Zero-TPrune prune by) and duplication-aware keep (DART, Wen et al., 2025, arXiv
2502.11494).

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


def keep_topk(scores: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k selection with a per-row budget.

    ``scores`` ``(B, H, N)``; ``keep`` ``(B,)`` tokens kept per head in each batch row. Returns
    ``indices`` ``(B, H, K)`` with ``K = max(keep)`` and ``valid`` ``(B, H, K)``, true for the ``keep[b]`` best
    entries of row ``b`` (the rest pad the rectangle and are masked), laid out by :func:`valid_last`.
    Ties go to the earlier token, so a left-padded row keeps what it keeps alone.
    """
    k = int(keep.max())
    top = ranked(scores)[..., :k]
    rank = torch.arange(k, device=scores.device)
    valid = rank[None, None, :] < keep.to(scores.device)[:, None, None]
    return valid_last(top, valid.expand_as(top))


def valid_last(indices: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``indices``/``valid`` ``(B, H, K)`` reordered so that each (row, head)'s valid entries come last, in position
    order (the padding first): kept entries stored this way are right-aligned, like a left-padded batch, so a
    packed layout (:mod:`tokenzip.ops.packing`) rebuilds the very same rectangle."""
    order = (indices + valid.long() * (int(indices.max()) + 1 if indices.numel() else 0)).argsort(dim=-1)
    return indices.gather(-1, order), valid.gather(-1, order)


def ranked(scores: torch.Tensor) -> torch.Tensor:
    """Indices of ``scores`` best first along the last dimension, ties in position order (a stable sort)."""
    return scores.sort(dim=-1, descending=True, stable=True).indices


def keep_topk_per_head(
    scores: torch.Tensor, keep: torch.Tensor, floor: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-adaptive budgets (Ada-KV, Feng et al., 2024, arXiv 2407.11550).

    A layer's budget ``H * keep[b]`` is spent on the best entries across all its heads, so heads
    whose attention is concentrated give entries to heads that need more; each head keeps at
    least ``floor * keep[b]`` (the paper's safeguard). Returns ``indices``/``valid`` like
    :func:`keep_topk`, with ``K`` = the largest head budget (storage is sized to it).
    """
    b, h, n = scores.shape
    keep = keep.to(scores.device)
    guaranteed = (floor * keep).long()
    rank_in_head = ranked(scores).argsort(dim=-1)  # 0 = best of its head
    boosted = torch.where(rank_in_head < guaranteed[:, None, None], torch.full_like(scores, float("inf")), scores)
    chosen = top_of_flat(boosted.reshape(b, h * n), h * keep).view(b, h, n)
    return select_chosen(scores, chosen)


def top_of_flat(flat: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the ``total[b]`` highest entries of each row of ``flat`` ``(B, T)``."""
    order = ranked(flat)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    ranks = torch.arange(flat.shape[1], device=flat.device)[None, :].expand(flat.shape[0], -1)
    chosen.scatter_(1, order, ranks < total.to(flat.device)[:, None])
    return chosen


def select_chosen(scores: torch.Tensor, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and validity of the ``chosen`` entries ``(B, H, N)`` as a ``(B, H, K)`` rectangle, ``K`` the largest
    per-head count, each head's entries last in position order (:func:`valid_last`); a padded layout stores this
    rectangle, the packed one only the valid entries."""
    per_head = chosen.sum(-1)  # (B, H)
    k = max(int(per_head.max()), 1)
    masked = torch.where(chosen, scores.float(), torch.full_like(scores, float("-inf"), dtype=torch.float32))
    idx = masked.topk(k, dim=-1).indices
    valid = torch.arange(k, device=scores.device)[None, None, :] < per_head[..., None]
    return valid_last(idx, valid)


def keep_topk_global(scores: list[torch.Tensor], keep: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One budget for several layers: the best entries over all layers and heads of each batch row.

    ``scores[l]`` ``(B, H, N_l)`` must be comparable across layers (KVzip's normalised attention is);
    ``keep[l]`` ``(B,)`` is the uniform per-head budget of layer ``l``; their total is what is kept.
    """
    b = scores[0].shape[0]
    flat = torch.cat([s.float().reshape(b, -1) for s in scores], dim=1)
    total = sum(s.shape[1] * k.to(flat.device) for s, k in zip(scores, keep))
    chosen = top_of_flat(flat, total)
    out, start = [], 0
    for s in scores:
        size = s[0].numel()
        out.append(select_chosen(s, chosen[:, start : start + size].view_as(s)))
        start += size
    return out


def keep_shared(scores: list[torch.Tensor], keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One selection of positions for every layer and head: a position's score is the highest any layer and head
    gives it (``scores[l]`` ``(B, H_l, N)``, ``-inf`` for invalid entries), an entry being worth keeping if some head
    needs it (KVzip's reading of its scores, Kim et al., 2025, arXiv 2505.23416); the top ``keep[b]`` positions of
    row ``b`` are kept, and always the newest one (column ``N - 1``: an engine continues a sequence from its last
    position). Returns ``indices`` ``(B, K)`` sorted by position and ``valid`` ``(B, K)``, as :func:`keep_topk`.
    """
    best = torch.stack([s.float().amax(1) for s in scores]).amax(0)  # (B, N)
    newest = best[:, -1:]
    best = torch.cat([best[:, :-1], torch.where(newest.isfinite(), torch.full_like(newest, float("inf")), newest)],
                     dim=-1)
    indices, valid = keep_topk(best[:, None], keep)
    return indices[:, 0], valid[:, 0]


def keep_within_loss(scores: torch.Tensor, mass: torch.Tensor, tolerance: float, least: torch.Tensor) -> torch.Tensor:
    """The fewest entries each batch row can keep so the estimated loss stays within ``tolerance``.

    Entries are dropped worst ``scores`` first (``(B, H, N)``, invalid entries ``-inf``); dropping an entry loses
    its share of ``mass`` (``(B, H, N)``, >= 0: attention paid to it, its leverage, ...). The loss of keeping the
    top ``k`` per head is the share of each head's mass outside them, averaged over heads; the result is the
    smallest ``k`` whose loss is ``<= tolerance``, and at least ``least`` ``(B,)``. Every valid entry counts
    for a little (``1e-9`` of its head's mass), so ``tolerance=0`` keeps them all. Returns ``keep`` ``(B,)``.
    """
    finite = scores.isfinite()
    m = mass.float().clamp_min(0) * finite
    m = torch.where(finite, m + 1e-9 * m.sum(-1, keepdim=True).clamp_min(1e-30), m)
    share = m / m.sum(-1, keepdim=True).clamp_min(1e-30)
    kept = share.double().gather(-1, ranked(scores)).cumsum(-1)  # (B, H, N): mass of the top k+1
    lost = (1 - kept).clamp_min(0).mean(1)  # (B, N): loss of keeping k+1 entries per head
    enough = lost <= tolerance
    first = torch.where(enough.any(-1), enough.float().argmax(-1) + 1, torch.full_like(least, scores.shape[-1]))
    n_valid = finite.sum(-1).amax(-1)
    return torch.minimum(torch.maximum(first.to(least.device), least), n_valid.to(least.device))


def gather_tokens(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, H, N, D)`` at ``indices`` ``(B, H, K)`` -> ``(B, H, K, D)``."""
    return x.gather(2, indices[..., None].expand(*indices.shape, x.shape[-1]))


def layer_budgets(n_layers: int, mean_keep: int, n: int, beta: float) -> list[int]:
    """PyramidKV (Cai et al., 2024, arXiv 2406.02069): budgets shrinking linearly with depth.

    The first layer keeps more and the last less, with mean ``mean_keep``:
    ``k_l = k_max - l (k_max - k_min)/(L-1)``, ``k_min = mean_keep / beta``,
    ``k_max = 2 mean_keep - k_min``. When ``k_max`` would exceed the ``n`` entries there are (low
    ratios), the line is flattened to ``k_max = n``, ``k_min = 2 mean_keep - n``, so the mean stays
    ``mean_keep`` instead of falling (clipping alone removed 40% at ratio 0.25 on 3 layers).
    """
    if n_layers == 1:
        return [mean_keep]
    k_max = min(2 * mean_keep - mean_keep / beta, n)
    k_min = 2 * mean_keep - k_max
    return [int(min(n, max(1, round(k_max - i * (k_max - k_min) / (n_layers - 1))))) for i in range(n_layers)]


def keep_top_scores(scores: torch.Tensor, candidates: torch.Tensor, remove: torch.Tensor) -> torch.Tensor:
    """Top-k pruning: among ``candidates``, the ``remove[b]`` lowest-scoring tokens of row ``b`` leave.

    ``scores`` (B, N), higher = more important. Ties leave the later token first (stable order).
    Tokens that are not candidates are never removed. Returns the keep mask (B, N).
    """
    masked = scores.float().masked_fill(~candidates, float("inf"))
    order = masked.argsort(dim=-1, stable=True)  # ascending: least important first
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    removable = candidates & (rank < remove.to(rank.device)[:, None])
    return ~removable


def duplication_aware_keep(
    features: torch.Tensor, pivots: torch.Tensor, candidates: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """DART (Wen et al., 2025, arXiv 2502.11494): keep the candidates that duplicate the pivots least.

    ``pivots`` (B, P) token indices in priority order (``-1`` = no pivot); the pivots that are
    candidates are kept first (at most ``keep[b]`` of them). Each pivot in turn then claims its
    share of the rest of ``keep[b]`` (the number of candidates kept in row ``b``) among the
    candidates not yet kept: those with the lowest cosine similarity to it. Returns the keep mask
    over candidates (B, N); non-candidates are False.
    """
    b, n, _ = features.shape
    keep = keep.to(features.device)
    unit = torch.nn.functional.normalize(features.float(), dim=-1)
    has_pivot = pivots >= 0
    safe = pivots.clamp(min=0)
    kept = torch.zeros_like(candidates)
    for p in range(pivots.shape[1]):
        take = has_pivot[:, p] & candidates.gather(1, safe[:, p, None])[:, 0] & (kept.sum(-1) < keep)
        kept.scatter_(1, safe[:, p, None], take[:, None] | kept.gather(1, safe[:, p, None]))
    left = (keep - kept.sum(-1)).clamp(min=0)
    n_pivots = has_pivot.sum(-1).clamp(min=1)
    share, extra = left // n_pivots, left % n_pivots
    pivot_units = unit.gather(1, safe[..., None].expand(-1, -1, unit.shape[-1]))  # (B, P, C)
    sims = pivot_units @ unit.transpose(1, 2)  # (B, P, N): cosine of every token to every pivot
    for p in range(pivots.shape[1]):
        quota = (share + (p < extra).long()) * has_pivot[:, p]
        sim = sims[:, p]
        free = candidates & ~kept
        order = sim.masked_fill(~free, float("inf")).argsort(dim=-1, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand_as(order))
        kept |= free & (rank < quota[:, None])
    shortfall = keep - kept.sum(-1)  # rows without pivots, or rounding: fill in order
    if bool((shortfall > 0).any()):
        free = candidates & ~kept
        kept |= free & (free.long().cumsum(-1) <= shortfall[:, None])
    return kept
