"""Schedules: counts add up, capacity limits, and errors that say how far the schedule gets."""

from __future__ import annotations

import pytest

import tokenzip as tz
from tokenzip.layers.schedule import plan_row, spread


@pytest.mark.parametrize("schedule", ["constant", "decreasing"])
@pytest.mark.parametrize("total,steps", [(0, 3), (7, 3), (100, 11), (5, 1)])
def test_spread_adds_up(schedule, total, steps):
    counts = spread(total, steps, schedule)
    assert sum(counts) == total and len(counts) == steps


def test_decreasing_front_loads():
    counts = spread(60, 5, "decreasing")
    assert list(counts) == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert spread(9, 3, "constant") == (3, 3, 3)
    assert plan_row("x", 10, 6, 3, "decreasing", merges=False) == (3, 2, 1)


def test_merging_never_takes_more_than_half_the_candidates_of_a_layer():
    assert plan_row("tome", 10, 8, 4, "constant", merges=True) == (2, 2, 2, 2)
    # 9 of 10 over 4 layers: equal shares would leave too much for the last layers, so earlier ones take more
    counts = plan_row("tome", 10, 9, 4, "constant", merges=True)
    assert sum(counts) == 9 and counts[0] > counts[-1]
    left = 100
    for c in plan_row("tome", 100, 90, 6, "decreasing", merges=True):
        assert c <= left // 2
        left -= c


def test_unreachable_ratio_says_how_far_it_gets():
    with pytest.raises(tz.TokenzipError, match=r"removes at most 7 of 10 tokens \(70.0%\)"):
        plan_row("tome", 10, 8, 2, "constant", merges=True)


def test_explicit_counts_over_capacity_are_an_error():
    with pytest.raises(tz.TokenzipError, match="at most half"):
        plan_row("tome", 10, 0, 2, "constant", merges=True, removed=(6, 0))


def test_no_reduction_layer_cannot_remove_anything():
    with pytest.raises(tz.TokenzipError, match="cannot reach"):
        plan_row("tome", 10, 3, 0, "constant", merges=True)


def test_bad_parameters():
    with pytest.raises(tz.TokenzipError, match="schedule"):
        tz.get_method("tome", ratio=0.5, schedule="exponential")
    with pytest.raises(tz.TokenzipError, match="not both"):
        tz.get_method("tome", ratio=0.5, removed=(4, 4))
    with pytest.raises(tz.TokenzipError, match="parameter protect must be an integer >= 0"):
        tz.get_method("tome", ratio=0.5, protect=-1)
    with pytest.raises(tz.TokenzipError, match="integers"):
        tz.get_method("tome", ratio=0.5, layers=("a",))
