"""Exact budgets: choose units by priority, then measure the assembled text on the target tokenizer.

Token counts are not additive across joins (a deletion can merge or split tokens), so the count of
a candidate selection is always *measured* on the text it would produce. The selection is the
``k`` best units by priority, with ``k`` found by binary search on the measured count (the largest
``k`` whose text fits), followed by a greedy pass that adds further units, best first, while they
still fit (in code, a statement only when the statement around it is kept). The result never
exceeds the budget unless the fixed (protected, structural) content alone does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tokenzip.prompt.segment import Pieces, assemble


@dataclass
class Fit:
    kept_units: np.ndarray  # bool per unit
    text: str
    spans: list
    tokens: int
    measurements: int


def fit_budget(
    pieces: Pieces,
    priority: np.ndarray,
    budget: int,
    count: Callable[[str], int],
    order: list[np.ndarray] | None = None,
    total_tokens: int | None = None,
    greedy_tries: int = 24,
) -> Fit:
    """Keep the highest-``priority`` units whose assembled text fits ``budget`` target tokens."""
    n_units = pieces.n_units
    ranking = np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable")
    measured = 0

    def build(mask: np.ndarray) -> tuple[str, list, int]:
        nonlocal measured
        text, spans = assemble(pieces, mask, order)
        measured += 1
        return text, spans, count(text)

    def prefix_mask(k: int) -> np.ndarray:
        mask = np.zeros(n_units, dtype=bool)
        mask[ranking[:k]] = True
        return mask

    # Binary search for the largest prefix that fits, starting near an estimate from character lengths.
    lo_mask = prefix_mask(0)
    best = (lo_mask, *build(lo_mask))
    if best[3] > budget or n_units == 0:
        return Fit(best[0], best[1], best[2], best[3], measured)
    lo, hi = 0, n_units + 1  # count(lo) fits; hi is the first k known not to fit (or n+1)
    guess = _estimate(pieces, ranking, budget, best[3], total_tokens or count(pieces.text))
    while hi - lo > 1:
        mid = guess if lo < guess < hi else (lo + hi) // 2
        guess = -1
        mask = prefix_mask(mid)
        text, spans, tokens = build(mask)
        if tokens <= budget:
            lo, best = mid, (mask, text, spans, tokens)
        else:
            hi = mid
    # Greedy: try the next units in priority order that may still fit (a unit only with its parent).
    mask, text, spans, tokens = best
    parent = getattr(pieces, "parent", None)
    tries = 0
    for u in ranking[lo:]:
        if tokens >= budget or tries >= greedy_tries:
            break
        if mask[u] or (parent is not None and parent[u] >= 0 and not mask[parent[u]]):
            continue
        trial = mask.copy()
        trial[u] = True
        t_text, t_spans, t_tokens = build(trial)
        tries += 1
        if t_tokens <= budget:
            mask, text, spans, tokens = trial, t_text, t_spans, t_tokens
    return Fit(mask, text, spans, tokens, measured)


def _estimate(pieces: Pieces, ranking: np.ndarray, budget: int, fixed_tokens: int, full: int) -> int:
    """Units that fit if tokens were proportional to characters (a starting point for the search)."""
    if len(ranking) == 0:
        return 0
    lengths = np.zeros(pieces.n_units, dtype=np.float64)
    removable = pieces.unit >= 0
    np.add.at(lengths, pieces.unit[removable], (pieces.gap_end - pieces.start)[removable])
    total_chars = float(lengths.sum())
    if total_chars <= 0:
        return 0
    per_char = max(full - fixed_tokens, 1) / total_chars
    cum = np.cumsum(lengths[ranking]) * per_char
    return int(np.searchsorted(cum, budget - fixed_tokens, side="right"))
