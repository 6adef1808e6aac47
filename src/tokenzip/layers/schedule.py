"""Schedules: how many tokens leave after which layer.

A method removes tokens after each layer in ``layers`` (indices into the model's layer stack). The
amount is given either as one target for the whole stack (``ratio``: the fraction of the candidate
tokens removed by the end; ``budget``: candidate tokens left at the end), spread over those layers
by a named schedule, or explicitly as ``removed``: a count per layer (ToMe's ``r`` list).

``constant`` removes the same number after every chosen layer (ToMe's constant ``r``);
``decreasing`` removes more early and less late, linearly (ToMe's "decreasing schedule"), which
saves more compute for the same final count.

Merging methods can remove at most half the candidates at one layer (each merged token needs a
partner); when a layer cannot take its share the rest moves on to the next layer, and a target the
layers cannot reach is an error that says how far the schedule gets.
"""

from __future__ import annotations

import functools

from tokenzip.errors import TokenzipError

SCHEDULES = ("constant", "decreasing")
_HALF = " (merging removes at most half the tokens per layer)"


def spread(total: int, steps: int, schedule: str) -> tuple[int, ...]:
    """Split ``total`` removals over ``steps`` layers; the counts add up to ``total`` exactly."""
    if steps <= 0:
        return ()
    if schedule == "constant":
        weights = [1.0] * steps
    elif schedule == "decreasing":
        weights = [float(steps - i) for i in range(steps)]
    else:
        raise TokenzipError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    norm = sum(weights)
    exact = [total * w / norm for w in weights]
    counts = [int(e) for e in exact]
    # largest remainders get the leftover units; earlier layers win ties
    for i in sorted(range(steps), key=lambda j: (-(exact[j] - counts[j]), j))[: total - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def capacity(candidates: int, merges: bool) -> int:
    """Most tokens one layer can remove from ``candidates``: half when merging into partners, else all."""
    return candidates // 2 if merges else candidates


def reachable(candidates: int, steps: int, merges: bool) -> int:
    """Most tokens ``steps`` layers can remove from ``candidates`` (each taking its full capacity)."""
    left = candidates
    for _ in range(steps):
        left -= capacity(left, merges)
    return candidates - left


def _least_now(left: int, still: int, later_steps: int, merges: bool) -> int:
    """Fewest tokens to remove at this layer so that later layers can still remove the rest."""
    lo, hi = 0, capacity(left, merges)
    if hi + reachable(left - hi, later_steps, merges) < still:
        return hi + 1  # infeasible: signalled to the caller
    while lo < hi:
        mid = (lo + hi) // 2
        if mid + reachable(left - mid, later_steps, merges) >= still:
            hi = mid
        else:
            lo = mid + 1
    return lo


@functools.lru_cache(maxsize=4096)
def plan_row(
    name: str,
    candidates: int,
    target: int,
    steps: int,
    schedule: str,
    merges: bool,
    removed: tuple[int, ...] | None = None,
    what: str = "",
) -> tuple[int, ...]:
    """Per-layer removal counts for one batch row with ``candidates`` removable tokens.

    ``target`` is the number to remove in total (ignored when ``removed`` gives explicit counts).
    The counts follow the schedule; where a layer cannot take its share (merging), the rest moves
    to the next layers, and where the later layers could not take what is left, earlier layers take
    more. Raises :class:`TokenzipError` when no plan reaches the target, saying how far one gets.
    """
    if removed is not None:
        return _explicit(name, candidates, removed, merges)
    if target > candidates:
        raise TokenzipError(
            f"{name}: asked to remove {target} tokens but the input has only {candidates} removable tokens{what}"
        )
    most = reachable(candidates, steps, merges)
    if target > most:
        raise TokenzipError(
            f"{name}: the schedule cannot reach the requested reduction: it removes at most {most} of {candidates} "
            f"tokens ({most / max(candidates, 1):.1%}) over {steps} layer(s), {target} were asked "
            f"({target / max(candidates, 1):.1%}){_HALF if merges else ''}. "
            "Reduce after more layers (layers=...) or ask for a lower ratio."
        )
    wanted = spread(target, steps, schedule)
    left, done, counts = candidates, 0, []
    for i in range(steps):
        still = target - done
        least = _least_now(left, still, steps - i - 1, merges)
        planned_so_far = sum(wanted[: i + 1]) - done
        take = min(capacity(left, merges), still, max(planned_so_far, least))
        counts.append(take)
        done += take
        left -= take
    return tuple(counts)


def _explicit(name: str, candidates: int, removed: tuple[int, ...], merges: bool) -> tuple[int, ...]:
    if sum(removed) > candidates:
        raise TokenzipError(
            f"{name}: removed={removed} asks for {sum(removed)} tokens but the input has only {candidates} removable"
        )
    left = candidates
    for i, want in enumerate(removed):
        if want > capacity(left, merges):
            raise TokenzipError(
                f"{name}: entry {i} of removed={removed} asks for {want} of the {left} tokens left, but merging "
                f"removes at most half per layer ({capacity(left, merges)} here); lower it"
            )
        left -= want
    return removed
