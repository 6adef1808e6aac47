"""Merging evicted and reduced tokens (tokenzip.ops.merging) on hand-built cases."""

from __future__ import annotations

import torch

from tokenzip.ops.merging import (
    bipartite_soft_matching,
    compact,
    merge_compact,
    merge_evicted,
    merge_weighted,
    soft_matching,
)


def test_merge_evicted_weighted_mean():
    keys = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[None, None]
    values = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 6.0]])[None, None]
    kept = torch.tensor([[[0, 2]]])
    k, v = merge_evicted(keys, values, kept, torch.ones(1, 1, 2, dtype=torch.bool), None, threshold=0.5)
    # token 1 (identical key to token 0, distance 0 -> weight 1) merges into token 0: values average
    assert torch.allclose(v[0, 0], torch.tensor([[3.0, 0.0], [0.0, 6.0]]))
    assert torch.allclose(k[0, 0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_bipartite_soft_matching_merges_the_most_similar_pairs():
    # slots: 0 (A) 1 (B) 2 (A) 3 (B) 4 (A) 5 (B); A tokens 2 and 4 copy B tokens 5 and 1 exactly,
    # A token 0 is orthogonal to everything. r = 2 -> 2 merges into 5, 4 into 1.
    e = torch.eye(4)
    metric = torch.stack([e[0], e[1], e[2], e[3], e[1] + 0.01 * e[3], e[2]])[None]
    dest = bipartite_soft_matching(metric, torch.ones(1, 6, dtype=torch.bool), torch.tensor([2]))
    assert dest.tolist() == [[0, 1, 5, 3, 1, 5]]


def test_bipartite_soft_matching_respects_the_mergeable_mask_and_row_counts():
    metric = torch.ones(2, 4, 3)  # everything identical
    mergeable = torch.tensor([[False, True, True, True], [True, True, True, True]])
    dest = bipartite_soft_matching(metric, mergeable, torch.tensor([5, 1]))
    assert dest[0].tolist()[0] == 0  # slot 0 is protected: it never merges
    assert (dest[0] != torch.arange(4)).sum() == 1  # only slot 2 can merge (A = {0, 2})
    assert (dest[1] != torch.arange(4)).sum() == 1  # r = 1


def test_merge_weighted_is_a_size_weighted_mean_and_sizes_add_up():
    x = torch.tensor([[[1.0], [10.0], [4.0], [7.0]]])
    size = torch.tensor([[1.0, 2.0, 3.0, 1.0]])
    dest = torch.tensor([[0, 1, 1, -1]])  # 2 merges into 1, 3 is pruned
    merged, new_size = merge_weighted(x, size, dest)
    assert new_size.tolist() == [[1.0, 5.0, 3.0, 1.0]]
    assert torch.allclose(merged[0, 1], torch.tensor([(2 * 10.0 + 3 * 4.0) / 5]))
    assert merged[0, 0].item() == 1.0 and merged[0, 3].item() == 7.0  # untouched


def test_compact_keeps_order_and_pads_short_rows():
    stays = torch.tensor([[True, False, True, True], [False, True, False, False]])
    index, valid = compact(stays)
    assert index.tolist() == [[0, 2, 3], [1, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def test_soft_matching_only_merges_usable_sources():
    metric = torch.ones(1, 4, 2)
    dest = soft_matching(metric, torch.tensor([[0, 2]]), torch.tensor([[True, False]]),
                         torch.tensor([[1, 3]]), torch.tensor([[True, True]]), torch.tensor([2]))
    assert dest[0, 2] == 2 and dest[0, 0] in (1, 3)


def test_merge_compact_equals_merge_then_compact():
    torch.manual_seed(3)
    x, size = torch.randn(2, 6, 3), torch.tensor([[1.0, 2, 1, 1, 3, 1], [1, 1, 1, 1, 1, 1]])
    dest = torch.tensor([[0, 1, 1, -1, 1, 5], [0, 0, 2, 2, 4, 5]])
    valid = torch.tensor([[True] * 6, [True, True, True, True, True, False]])
    merged, new_size = merge_weighted(x, size, dest)
    index, keep = compact((dest == torch.arange(6)) & valid)
    x2, size2, index2, keep2 = merge_compact(x, size, dest, valid)
    assert torch.equal(index, index2) and torch.equal(keep, keep2)
    assert torch.allclose(x2[keep], merged.gather(1, index[..., None].expand(-1, -1, 3))[keep])
    assert torch.equal(size2[keep], new_size.gather(1, index)[keep])
    assert size2[keep].sum().item() == 8 + 5  # row 0 loses the pruned token; row 1 its padding slot
