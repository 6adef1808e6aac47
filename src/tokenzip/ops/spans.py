"""Token values reduced over pieces of text and over groups of pieces (prompt stage).

Token values are ``(T,)`` with character spans ``(T, 2)`` into the text; pieces of text (words, sentences, lines)
are spans ``(P, 2)``; groups map pieces to units. This is how Selective Context (Li et al., 2023, arXiv 2310.06201)
and the LLMLingua family score words, sentences and documents from their tokens' self-information.

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


def spans_reduce(
    values: torch.Tensor, value_spans: torch.Tensor, spans: torch.Tensor, how: str = "mean", empty: float = 0.0
) -> torch.Tensor:
    """Reduce token ``values`` ``(T,)`` over every span ``(P, 2)`` they overlap -> ``(P,)``.

    ``value_spans`` ``(T, 2)`` are the tokens' character spans, sorted and non-overlapping (empty
    spans are ignored); a token covering several spans counts for each. ``how`` is ``mean``, ``sum``
    or ``max``; spans no token overlaps get ``empty``.
    """
    v_start, v_end = value_spans[:, 0].contiguous(), value_spans[:, 1].contiguous()
    nonempty = v_end > v_start
    values, v_start, v_end = values[nonempty], v_start[nonempty], v_end[nonempty]
    first = torch.searchsorted(v_end, spans[:, 0].contiguous(), right=True)
    last = torch.searchsorted(v_start, spans[:, 1].contiguous(), right=False) - 1
    count = (last - first + 1).clamp(min=0)
    owner = torch.repeat_interleave(torch.arange(len(spans)), count)
    offset = torch.arange(int(count.sum())) - torch.repeat_interleave(count.cumsum(0) - count, count)
    token = torch.repeat_interleave(first, count) + offset
    return group_reduce(values.float()[token], owner, len(spans), how, empty)


def group_reduce(values: torch.Tensor, groups: torch.Tensor, n_groups: int, how: str = "mean",
                 empty: float = 0.0) -> torch.Tensor:
    """Reduce ``values`` ``(N,)`` by group id ``(N,)`` (ids < 0 ignored) -> ``(n_groups,)``."""
    if how not in ("mean", "sum", "max"):
        raise ValueError(f"how must be mean, sum or max, got {how!r}")
    keep = groups >= 0
    values, groups = values.float()[keep], groups[keep].long()
    out = torch.full((n_groups,), empty, dtype=torch.float32)
    if len(values) == 0:
        return out
    reduce = {"mean": "mean", "sum": "sum", "max": "amax"}[how]
    present = torch.zeros(n_groups, dtype=torch.bool)
    present[groups] = True
    result = torch.zeros(n_groups, dtype=torch.float32).scatter_reduce(0, groups, values, reduce, include_self=False)
    return torch.where(present, result, out)
