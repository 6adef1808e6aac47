"""Top-k keep, budgets and keep masks (tokenzip.ops.topk) on hand-built cases."""

from __future__ import annotations

import pytest
import torch

from tokenzip.ops.topk import (
    duplication_aware_keep,
    keep_top_scores,
    keep_topk,
    keep_topk_global,
    keep_topk_per_head,
    keep_within_loss,
    layer_budgets,
)


def test_keep_topk_per_row_budget_and_order():
    scores = torch.tensor([[[0.1, 0.9, 0.5, 0.7]], [[0.9, 0.8, 0.1, 0.2]]])
    idx, valid = keep_topk(scores, torch.tensor([2, 1]))
    assert idx[0, 0][valid[0, 0]].tolist() == [1, 3]
    assert idx[1, 0][valid[1, 0]].tolist() == [0]


def test_adakv_budget_moves_between_heads_with_floor():
    scores = torch.tensor([[[9.0, 8.0, 7.0, 6.0], [1.0, 0.5, 0.2, 0.1]]])
    idx, valid = keep_topk_per_head(scores, torch.tensor([2]), floor=0.0)
    assert valid[0].sum(-1).tolist() == [4, 0]
    idx, valid = keep_topk_per_head(scores, torch.tensor([2]), floor=0.5)  # each head keeps >= 1
    assert idx[0, 0][valid[0, 0]].tolist() == [0, 1, 2] and idx[0, 1][valid[0, 1]].tolist() == [0]


def test_global_topk_over_layers():
    a = torch.tensor([[[0.9, 0.8, 0.1]]])
    b = torch.tensor([[[0.2, 0.7, 0.05]]])
    (ia, va), (ib, vb) = keep_topk_global([a, b], [torch.tensor([2]), torch.tensor([1])])
    assert ia[0, 0][va[0, 0]].tolist() == [0, 1] and ib[0, 0][vb[0, 0]].tolist() == [1]


def test_pyramid_budgets_shrink_with_depth_and_keep_the_mean():
    budgets = layer_budgets(4, 100, 1000, beta=4.0)
    assert budgets == sorted(budgets, reverse=True) and sum(budgets) == pytest.approx(400, abs=2)
    # a low ratio: the steep line would ask more than the n entries of the first layer; flattened, same mean
    budgets = layer_budgets(3, 1536, 2048, beta=20.0)
    assert budgets[0] == 2048 and budgets == sorted(budgets, reverse=True)
    assert sum(budgets) == pytest.approx(3 * 1536, abs=2)


def test_keep_within_loss_counts():
    scores = torch.tensor([[[4.0, 3.0, 2.0, 1.0]]])
    mass = torch.tensor([[[0.5, 0.3, 0.15, 0.05]]])
    least = torch.tensor([1])
    assert keep_within_loss(scores, mass, 0.0, least).tolist() == [4]
    assert keep_within_loss(scores, mass, 0.06, least).tolist() == [3]
    assert keep_within_loss(scores, mass, 0.25, least).tolist() == [2]
    assert keep_within_loss(scores, mass, 0.25, torch.tensor([3])).tolist() == [3]  # the ceiling on removal
    padded = torch.tensor([[[float("-inf"), 4.0, 3.0, 1.0]]])
    assert keep_within_loss(padded, mass, 0.0, least).tolist() == [3]  # padding is never counted as kept


def test_keep_top_scores_drops_the_lowest_candidates_per_row():
    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0], [0.0, 4.0, 2.0, 8.0, 6.0]])
    candidates = torch.tensor([[False, True, True, True, True], [True, True, True, True, False]])
    keep = keep_top_scores(scores, candidates, torch.tensor([2, 1]))
    # row 0: candidates 1..4 with scores 1,5,3,7 -> the two lowest (1: 1.0, 3: 3.0) leave
    # row 1: candidates 0..3 with scores 0,4,2,8 -> the lowest (0: 0.0) leaves; 4 is not a candidate
    assert keep.tolist() == [[True, False, True, False, True], [False, True, True, True, True]]


def test_keep_top_scores_never_removes_non_candidates_even_with_low_scores():
    scores = torch.tensor([[-100.0, 1.0, 2.0]])
    keep = keep_top_scores(scores, torch.tensor([[False, True, True]]), torch.tensor([1]))
    assert keep.tolist() == [[True, False, True]]


def test_duplication_aware_keep_picks_the_least_similar_to_each_pivot():
    # pivot 0 points along x; candidates 1..4: 1 ~ x (duplicate), 2 ~ y, 3 ~ -x, 4 ~ x
    feats = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0], [0.99, 0.0]]])
    candidates = torch.tensor([[True, True, True, True, True]])
    kept = duplication_aware_keep(feats, torch.tensor([[0]]), candidates, torch.tensor([3]))
    # the pivot stays, then its two least similar candidates: 3 (cos -1) and 2 (cos 0)
    assert kept.tolist() == [[True, False, True, True, False]]


def test_duplication_aware_keep_keeps_at_most_keep_pivots():
    feats = torch.randn(1, 5, 4)
    kept = duplication_aware_keep(feats, torch.tensor([[3, 1, 0]]), torch.ones(1, 5, dtype=torch.bool),
                                  torch.tensor([2]))
    assert kept.tolist() == [[False, True, False, True, False]]
