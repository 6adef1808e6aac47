"""Shared reducers: what to do with the tokens that are not kept. Pure tensor functions, no model code.

Top-k keep (per head, head-adaptive, over all layers, within a loss), per-layer budget allocation, merging
evicted entries into kept ones and quantization for the KV cache; top-k pruning, bipartite soft matching merge
(with size tracking) and duplication-aware keep for hidden states; top-fraction and knapsack selection for
prompt units: all live here, once, for every stage.
"""

from __future__ import annotations

import torch

# ---------------------------------------------------------------------------------------------
# KV-cache stage reducers. Scores (B, H, N), higher = keep; tokens (B, H, N, D).
# ---------------------------------------------------------------------------------------------


def keep_topk(scores: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k selection with a per-row budget.

    ``scores`` ``(B, H, N)``; ``keep`` ``(B,)`` tokens kept per head in each batch row. Returns
    ``indices`` ``(B, H, K)`` with ``K = max(keep)``, sorted by position, and ``valid`` ``(B, H, K)``,
    true for the ``keep[b]`` best entries of row ``b`` (the rest pad the rectangle and are masked).
    Ties go to the earlier token, so a left-padded row keeps what it keeps alone.
    """
    k = int(keep.max())
    top = ranked(scores)[..., :k]
    rank = torch.arange(k, device=scores.device)
    valid = rank[None, None, :] < keep.to(scores.device)[:, None, None]
    order = top.argsort(dim=-1)
    return top.gather(-1, order), valid.expand_as(top).gather(-1, order)


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
    """Indices (sorted by position) and validity of the ``chosen`` entries ``(B, H, N)``, padded to the
    largest per-head count ``K``: storage is ``(B, H, K)``."""
    per_head = chosen.sum(-1)  # (B, H)
    k = max(int(per_head.max()), 1)
    masked = torch.where(chosen, scores.float(), torch.full_like(scores, float("-inf"), dtype=torch.float32))
    idx = masked.topk(k, dim=-1).indices
    valid = torch.arange(k, device=scores.device)[None, None, :] < per_head[..., None]
    order_pos = idx.argsort(dim=-1)
    return idx.gather(-1, order_pos), valid.gather(-1, order_pos)


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


def merge_evicted(
    keys: torch.Tensor,
    values: torch.Tensor,
    kept: torch.Tensor,
    kept_valid: torch.Tensor,
    token_valid: torch.Tensor | None,
    threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KVMerger-style merging (Wang et al., 2024, arXiv 2407.08454): evicted entries are not dropped.

    Each evicted entry is assigned to its most similar kept key (cosine similarity of keys, per
    head) when that similarity exceeds ``threshold`` (``token_valid`` ``(B, H, N)`` excludes padding),
    and each kept entry becomes the weighted mean
    of itself and the entries merged into it, weighted by a Gaussian kernel of their key distance
    (the paper's merging weights), with the kept entry's own weight 1. Returns merged
    ``(keys, values)`` at the kept indices: ``(B, H, K, D)``.
    """
    b, h, n, d = keys.shape
    k_kept = gather_tokens(keys, kept).float()
    v_kept = gather_tokens(values, kept).float()
    is_kept = torch.zeros(b, h, n, dtype=torch.bool, device=keys.device)
    is_kept.scatter_(2, kept, kept_valid)
    evicted = ~is_kept
    if token_valid is not None:
        evicted &= token_valid
    kn = torch.nn.functional.normalize(keys.float(), dim=-1)
    kkn = torch.nn.functional.normalize(k_kept, dim=-1)
    sim = kn @ kkn.transpose(-1, -2)  # (B, H, N, K)
    sim = sim.masked_fill(~kept_valid[:, :, None, :], float("-inf"))
    best_sim, target = sim.max(dim=-1)  # (B, H, N)
    merge = evicted & (best_sim > threshold)
    # Gaussian kernel weight on key distance, bandwidth = mean squared distance to the target
    dist2 = (keys.float() - gather_tokens(k_kept, target)).pow(2).sum(-1)
    sigma2 = dist2[merge].mean().clamp_min(1e-6) if bool(merge.any()) else torch.tensor(1.0, device=keys.device)
    weight = torch.exp(-dist2 / (2 * sigma2)) * merge
    k_sum = k_kept.clone()
    v_sum = v_kept.clone()
    w_sum = torch.ones(b, h, kept.shape[-1], device=keys.device)
    k_sum.scatter_add_(2, target[..., None].expand(-1, -1, -1, d), keys.float() * weight[..., None])
    v_sum.scatter_add_(2, target[..., None].expand(-1, -1, -1, d), values.float() * weight[..., None])
    w_sum.scatter_add_(2, target, weight)
    return (k_sum / w_sum[..., None]).to(keys.dtype), (v_sum / w_sum[..., None]).to(values.dtype)


# --- quantization (KIVI, Liu et al., 2024, arXiv 2402.02750; ZipCache, He et al., 2024, arXiv 2405.14256) ---


def quantize(x: torch.Tensor, bits: int, dim: int, group: int) -> dict[str, torch.Tensor | int]:
    """Asymmetric min-max quantization of ``x`` in groups of ``group`` along ``dim``, packed into uint8.

    KIVI quantizes keys per channel (groups along the token dimension) and values per token
    (groups along the channel dimension). Returns the packed codes (``8 // bits`` per byte) and
    fp16 scale and zero-point per group.
    """
    if bits not in (2, 4, 8):
        raise ValueError(f"bits must be 2, 4 or 8, got {bits}")
    xt = x.float().movedim(dim, -1)
    shape = xt.shape
    size = shape[-1]
    if size % group:
        raise ValueError(f"dimension {size} is not a multiple of the group size {group}")
    g = xt.reshape(*shape[:-1], size // group, group)
    lo = g.amin(-1, keepdim=True)
    hi = g.amax(-1, keepdim=True)
    levels = 2**bits - 1
    scale = ((hi - lo) / levels).clamp_min(1e-8)
    codes = ((g - lo) / scale).round().clamp(0, levels).to(torch.uint8).reshape(*shape)
    per_byte = 8 // bits
    codes = codes.reshape(*shape[:-1], size // per_byte, per_byte)
    shifts = torch.arange(per_byte, device=x.device, dtype=torch.uint8) * bits
    packed = (codes << shifts).sum(-1, dtype=torch.uint8) if per_byte > 1 else codes[..., 0]
    return {"packed": packed, "scale": scale.half(), "zero": lo.half(), "bits": bits, "dim": dim, "group": group}


def dequantize(q: dict[str, torch.Tensor | int], dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`quantize`."""
    bits, dim, group = int(q["bits"]), int(q["dim"]), int(q["group"])
    packed = q["packed"]
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, device=packed.device, dtype=torch.uint8) * bits
    codes = (packed[..., None] >> shifts) & (2**bits - 1) if per_byte > 1 else packed[..., None]
    codes = codes.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte).float()
    size = codes.shape[-1]
    g = codes.reshape(*codes.shape[:-1], size // group, group)
    x = g * q["scale"].float() + q["zero"].float()
    return x.reshape(*codes.shape).movedim(-1, dim).to(dtype)


def quantized_bytes(q: dict[str, torch.Tensor | int]) -> int:
    return sum(t.numel() * t.element_size() for t in (q["packed"], q["scale"], q["zero"]))


# ---------------------------------------------------------------------------------------------
# Layers stage reducers (in-model token pruning and merging). Hidden states (B, N, C); per-token
# masks (B, N); per-row counts (B,). A reduction is a destination per token, ``dest`` (B, N):
# ``dest[b, i] == i`` the token stays, ``dest[b, i] == j`` it is merged into token j (which stays),
# ``dest[b, i] == -1`` it is pruned.
# ---------------------------------------------------------------------------------------------


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


def soft_matching(
    metric: torch.Tensor,
    src: torch.Tensor,
    src_valid: torch.Tensor,
    dst: torch.Tensor,
    dst_valid: torch.Tensor,
    r: torch.Tensor,
) -> torch.Tensor:
    """Soft matching (ToMe, Bolya et al., 2023, arXiv 2210.09461): merge sources into their closest destination.

    Every source token (indices ``src`` (B, S), usable where ``src_valid``) draws an edge to its most
    cosine-similar destination (``dst`` (B, D), usable where ``dst_valid``) under ``metric`` (B, N, C);
    the ``r[b]`` strongest edges of row ``b`` are merged. Returns ``dest`` (B, N).
    """
    b, n, _ = metric.shape
    unit = torch.nn.functional.normalize(metric.float(), dim=-1)
    a = unit.gather(1, src[..., None].expand(-1, -1, unit.shape[-1]))
    d = unit.gather(1, dst[..., None].expand(-1, -1, unit.shape[-1]))
    sim = (a @ d.transpose(1, 2)).masked_fill(~dst_valid[:, None, :], float("-inf"))
    best, best_dst = sim.max(dim=-1)  # (B, S)
    best = best.masked_fill(~src_valid, float("-inf"))
    order = best.argsort(dim=-1, descending=True, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    merged = (rank < r.to(rank.device)[:, None]) & torch.isfinite(best)
    dest = torch.arange(n, device=metric.device).expand(b, n).clone()
    target = dst.gather(1, best_dst)
    dest.scatter_(1, src, torch.where(merged, target, src))
    return dest


def bipartite_soft_matching(metric: torch.Tensor, mergeable: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """ToMe's bipartite soft matching: tokens alternate into sets A (even slots) and B (odd slots).

    Each mergeable A token is matched to its most similar mergeable B token (cosine similarity of
    ``metric``, ToMe uses the attention keys averaged over heads); the ``r[b]`` best-matched A
    tokens are merged into their match. At most half the tokens can leave per call. Returns ``dest``.
    """
    b, n, _ = metric.shape
    src = torch.arange(0, n, 2, device=metric.device).expand(b, -1)
    dst = torch.arange(1, n, 2, device=metric.device).expand(b, -1)
    return soft_matching(metric, src, mergeable[:, 0::2], dst, mergeable[:, 1::2], r)


def merge_weighted(x: torch.Tensor, size: torch.Tensor, dest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply merges as size-weighted averages (ToMe's ``merge_wavg``) and add up sizes.

    ``x`` (B, N, C), ``size`` (B, N) how many input tokens each token stands for. Tokens that stay
    and receive nothing keep their exact values. Pruned tokens are untouched here (see
    :func:`compact`). Returns ``(x, size)`` before compaction.
    """
    n = x.shape[1]
    index = torch.arange(n, device=x.device)
    moved = (dest >= 0) & (dest != index)
    if not bool(moved.any()):
        return x, size
    target = torch.where(moved, dest, index)
    weight = (size * moved).to(x.dtype)
    incoming = torch.zeros_like(x).scatter_add_(1, target[..., None].expand_as(x), x * weight[..., None])
    added = torch.zeros_like(size).scatter_add_(1, target, size * moved)
    received = added > 0
    new_size = size + added
    merged = (x * size[..., None].to(x.dtype) + incoming) / new_size[..., None].to(x.dtype)
    return torch.where(received[..., None], merged, x), new_size


def compact(stays: torch.Tensor, align: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    """Slots of the tokens that stay, in their original order, padded to the longest row.

    ``stays`` (B, N) bool -> ``index`` (B, M) into the old slots and ``valid`` (B, M), where
    ``M = max_b stays[b].sum()``; padding slots point at slot 0 and are not valid. ``align="left"``
    puts a short row's padding at the end; ``"right"`` at the start (decoders: the last slot of
    every row is then its last token, as with left padding).
    """
    m = int(stays.sum(-1).max()) if stays.numel() else 0
    if align == "right":
        index = stays.to(torch.int8).argsort(dim=-1, stable=True)[:, stays.shape[1] - m :]
    else:
        index = (~stays).to(torch.int8).argsort(dim=-1, stable=True)[:, :m]
    valid = stays.gather(1, index)
    return torch.where(valid, index, torch.zeros_like(index)), valid


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


def merge_compact(
    x: torch.Tensor, size: torch.Tensor, dest: torch.Tensor, valid: torch.Tensor, align: str = "left"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`merge_weighted` then :func:`compact`, computing merged values only for the tokens that stay.

    Returns ``(x, size, index, valid)`` for the new slots: ``index`` (B, M) points at each new slot's
    old slot; padding slots hold zeros, size 1 and are not valid.
    """
    b, n, c = x.shape
    old = torch.arange(n, device=x.device)
    stays = (dest == old) & valid
    index, keep = compact(stays, align)
    m = index.shape[1]
    x_new = x.gather(1, index[..., None].expand(-1, -1, c))
    size_new = torch.where(keep, size.gather(1, index), torch.ones_like(keep, dtype=size.dtype))
    moved = (dest >= 0) & (dest != old) & valid
    if bool(moved.any()):
        slots = torch.where(keep, torch.arange(m, device=x.device), m)  # m = a scratch column
        new_slot = torch.full((b, n), m, dtype=torch.long, device=x.device).scatter_reduce(1, index, slots, "amin")
        target = torch.where(moved, new_slot.gather(1, dest.clamp(min=0)), m)
        weight = (size * moved).to(x.dtype)
        incoming = x.new_zeros(b, m + 1, c).scatter_add_(1, target[..., None].expand(-1, -1, c), x * weight[..., None])
        added = size.new_zeros(b, m + 1).scatter_add_(1, target, size * moved)[:, :m]
        received = added > 0
        total = size_new + added
        merged = (x_new * size_new[..., None].to(x.dtype) + incoming[:, :m]) / total[..., None].to(x.dtype)
        x_new = torch.where(received[..., None], merged, x_new)
        size_new = total
    if not bool(keep.all()):
        x_new = x_new * keep[..., None].to(x.dtype)
    return x_new, size_new, index, keep


# ---------------------------------------------------------------------------------------------
# Prompt stage reducers. Priorities are one number per unit (higher = kept first); costs are
# token counts.
# ---------------------------------------------------------------------------------------------


def top_fraction(scores: torch.Tensor, costs: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the highest ``scores`` until ``fraction`` of the total cost is kept: a bool mask.

    LLMLingua's per-segment threshold (Jiang et al., 2023, arXiv 2310.05736): the segment keeps the
    tokens above the score quantile that leaves the target share of its tokens.
    """
    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.bool)
    order = torch.argsort(scores, descending=True, stable=True)
    cum = costs.float()[order].cumsum(0)
    n = int(torch.searchsorted(cum, fraction * float(cum[-1]), right=True))
    keep = torch.zeros(len(scores), dtype=torch.bool)
    keep[order[: max(n, 1)]] = True
    return keep


def linear_rank_offsets(n: int, spread: float) -> torch.Tensor:
    """LongLLMLingua's dynamic compression ratio (Jiang et al., 2024, arXiv 2310.06839): offsets from
    ``+spread`` for the best-ranked document down to ``-spread`` for the worst, linearly."""
    if n <= 1:
        return torch.zeros(n)
    return spread * (1 - 2 * torch.arange(n, dtype=torch.float32) / (n - 1))


def percentile_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each score within its tensor mapped to [0, 1] (ties keep their order)."""
    n = len(scores)
    if n <= 1:
        return torch.ones(n)
    order = torch.argsort(scores, stable=True)
    ranks = torch.empty(n)
    ranks[order] = torch.arange(n, dtype=torch.float32) / (n - 1)
    return ranks


def knapsack(values: torch.Tensor, costs: torch.Tensor, capacity: int) -> torch.Tensor:
    """0/1 knapsack: the items of greatest total value whose integer costs fit ``capacity``.

    LongCodeZip's fine stage (Shi et al., 2025, arXiv 2510.00446) chooses code blocks this way.
    Dynamic programming over capacities, vectorised per item; returns the chosen-item mask.
    """
    n = len(values)
    capacity = max(int(capacity), 0)
    costs = costs.long().clamp(min=0)
    best = torch.zeros(capacity + 1, dtype=torch.float64)
    took = torch.zeros(n, capacity + 1, dtype=torch.bool)
    for i in range(n):
        c, v = int(costs[i]), float(values[i])
        if c > capacity or v <= 0:
            continue
        candidate = torch.full_like(best, float("-inf"))
        candidate[c:] = best[: capacity + 1 - c] + v
        better = candidate > best
        took[i] = better
        best = torch.where(better, candidate, best)
    chosen = torch.zeros(n, dtype=torch.bool)
    room = int(torch.argmax(best))
    for i in range(n - 1, -1, -1):
        if took[i, room]:
            chosen[i] = True
            room -= int(costs[i])
    return chosen
