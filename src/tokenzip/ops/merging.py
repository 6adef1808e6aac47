"""Merging instead of dropping: the tokens that leave are folded into tokens that stay.

KV cache: KVMerger (Wang et al., 2024, arXiv 2407.08454) merges evicted entries ``(B, H, N, D)`` into their most
similar kept key. Hidden states ``(B, N, C)`` (layers stage): soft matching and bipartite soft matching (ToMe, Bolya
et al., 2023, arXiv 2210.09461; PiToMe and Zero-TPrune match this way too), size-weighted merging that tracks how
many input tokens each token stands for (ToMe's ``merge_wavg``) and compaction to the tokens that stay.

A layers-stage reduction is a destination per token, ``dest`` (B, N): ``dest[b, i] == i`` the token stays,
``dest[b, i] == j`` it is merged into token j (which stays), ``dest[b, i] == -1`` it is pruned.

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch

from tokenzip.ops.topk import gather_tokens


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
