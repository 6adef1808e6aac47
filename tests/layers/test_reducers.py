"""Hand-built cases for the layers stage's scorers and reducers (tokenzip.scoring / tokenzip.reduce)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenzip.reduce import (
    bipartite_soft_matching,
    compact,
    duplication_aware_keep,
    keep_top_scores,
    merge_compact,
    merge_weighted,
    soft_matching,
)
from tokenzip.scoring import cls_attention, energy_scores, last_tokens_attention, weighted_pagerank


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


def test_cls_attention_is_the_softmax_of_the_cls_row_averaged_over_heads():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    manual = torch.softmax((q[:, :, :1] @ k.transpose(-1, -2)) * 0.5, dim=-1).mean(dim=(1, 2))
    assert torch.allclose(cls_attention(q, k, 0.5), manual, atol=1e-6)
    mask = torch.tensor([True, True, False, True, True])[None, None, None].expand(2, 1, 1, 5)
    masked = cls_attention(q, k, 0.5, mask)
    assert torch.all(masked[:, 2] == 0) and torch.allclose(masked.sum(-1), torch.ones(2))


def test_last_tokens_attention_uses_the_last_query_row():
    torch.manual_seed(1)
    q, k = torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    manual = torch.softmax(q[:, :, -1:] @ k.transpose(-1, -2) * 0.3, dim=-1).mean(dim=(1, 2))
    assert torch.allclose(last_tokens_attention(q, k, 0.3), manual, atol=1e-6)


def test_weighted_pagerank_ranks_the_token_everyone_attends_to_first():
    # every token puts most of its attention on token 2
    attn = torch.full((1, 1, 4, 4), 0.1)
    attn[..., 2] = 0.7
    s = weighted_pagerank(attn)
    assert int(s.argmax()) == 2 and torch.allclose(s.sum(), torch.tensor(1.0))


def test_energy_is_high_in_crowded_neighbourhoods():
    metric = torch.tensor([[[1.0, 0.0], [1.0, 0.05], [0.98, 0.0], [0.0, 1.0]]])
    e = energy_scores(metric, torch.ones(1, 4, dtype=torch.bool), margin=0.5)
    assert int(e.argmin()) == 3  # the isolated token has the lowest energy
    sim = F.normalize(metric, dim=-1) @ F.normalize(metric, dim=-1).transpose(1, 2)
    assert torch.allclose(e, F.elu(sim - 0.5).mean(-1), atol=1e-6)


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
