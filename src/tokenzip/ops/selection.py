"""Choosing prompt units that carry a cost (words, sentences, documents, code blocks).

Priorities are one number per unit (higher = kept first); costs are token counts. Keeping the top fraction of the
cost (LLMLingua, Jiang et al., 2023, arXiv 2310.05736), rank-dependent ratio offsets (LongLLMLingua, Jiang et al.,
2024, arXiv 2310.06839), percentile ranks and a 0/1 knapsack (LongCodeZip, Shi et al., 2025, arXiv 2510.00446).

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


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
