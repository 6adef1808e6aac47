"""Each scorer keeps the top-k of its documented score on hand-built cases."""

import math

import pytest
import torch

import tokenzip as tz
from tokenzip.kv.base import LayerContext
from tokenzip.reduce import keep_topk, keep_topk_global, keep_topk_per_head, layer_budgets, merge_evicted
from tokenzip.scoring import (
    expected_attention_scores,
    normalized_attention,
    received_attention,
    replay_attention_max,
    rotate_half,
    unrotate,
    window_attention,
)


def ctx_of(keys, values=None, queries=None, received=None, valid=None, scaling=1.0):
    values = torch.ones_like(keys) if values is None else values
    return LayerContext(layer_idx=0, num_layers=1, keys=keys, values=values, queries=queries, token_valid=valid,
                        scaling=scaling, is_sliding=False, adapter=None, received=received)


def kept_indices(method, ctx):
    keep = method.keep_counts(ctx)
    idx, valid = method.select(ctx, method.masked_scores(ctx), keep)
    return idx[0, 0][valid[0, 0]].tolist()


def test_knorm_keeps_smallest_key_norms():
    norms = torch.tensor([3.0, 1.0, 2.0, 5.0, 0.5, 4.0])
    keys = torch.stack([norms, torch.zeros(6)], -1)[None, None]
    assert kept_indices(tz.get_method("knorm", ratio=0.5), ctx_of(keys)) == [1, 2, 4]


def test_keydiff_keeps_keys_unlike_the_mean():
    keys = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, -0.1], [-1.0, 0.2], [0.9, 0.0]])[None, None]
    # mean key points along +x; the keys at 2 and 4 are the least similar to it
    assert kept_indices(tz.get_method("keydiff", budget=2), ctx_of(keys)) == [2, 4]


def test_streaming_llm_keeps_sinks_and_recent():
    keys = torch.randn(1, 1, 10, 4)
    assert kept_indices(tz.get_method("streaming_llm", budget=5, sinks=2), ctx_of(keys)) == [0, 1, 7, 8, 9]


def test_streaming_llm_counts_positions_on_real_tokens():
    keys = torch.randn(1, 1, 8, 4)
    valid = torch.tensor([[False, False, True, True, True, True, True, True]])
    assert kept_indices(tz.get_method("streaming_llm", budget=3, sinks=1), ctx_of(keys, valid=valid)) == [2, 6, 7]


def test_window_attention_matches_hand_softmax():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[None, None]
    queries = torch.tensor([[2.0, 0.0], [0.0, 3.0]])[None, None]  # positions 1 and 2
    attn = window_attention(queries, keys, scaling=0.5)
    row0 = torch.softmax(torch.tensor([1.0, 0.0]), 0)  # query at position 1 sees keys 0..1
    row1 = torch.softmax(torch.tensor([0.0, 1.5, 1.5]), 0)
    assert torch.allclose(attn[0, 0, 0, :2], row0) and attn[0, 0, 0, 2] == 0
    assert torch.allclose(attn[0, 0, 1], row1)


def test_snapkv_keeps_top_window_attention_and_protects_window():
    torch.manual_seed(0)
    keys = torch.randn(1, 1, 12, 4)
    queries = torch.randn(1, 1, 2, 4)
    method = tz.get_method("snapkv", budget=5, window_size=2, kernel=1)
    attn = window_attention(queries, keys, 0.5).mean(2)[0, 0]
    expected = sorted(set(attn[:10].topk(3).indices.tolist()) | {10, 11})
    assert kept_indices(method, ctx_of(keys, queries=queries, scaling=0.5)) == expected


def test_tova_uses_last_query_averaged_over_heads():
    torch.manual_seed(1)
    keys = torch.randn(1, 1, 8, 4)
    queries = torch.randn(1, 2, 3, 4)  # two query heads share the KV head
    attn = window_attention(queries[:, :, -1:], keys, 1.0)[0, :, 0].mean(0)
    expected = sorted(attn.topk(4).indices.tolist())
    assert kept_indices(tz.get_method("tova", ratio=0.5), ctx_of(keys, queries=queries)) == expected


def test_received_attention_is_the_causal_column_sum():
    torch.manual_seed(2)
    q, k = torch.randn(1, 1, 5, 3), torch.randn(1, 1, 5, 3)
    logits = (q[0, 0] @ k[0, 0].T) * 0.7
    logits = logits.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf"))
    assert torch.allclose(received_attention(q, k, 0.7, chunk=2)[0, 0], torch.softmax(logits, -1).sum(0), atol=1e-6)


def test_h2o_keeps_heavy_hitters_and_recent():
    received = torch.tensor([5.0, 0.1, 3.0, 0.2, 0.3, 0.1, 0.0, 0.0])[None, None]
    keys = torch.randn(1, 1, 8, 2)
    method = tz.get_method("h2o", budget=4, recent=0.5)  # 2 heavy hitters + the 2 most recent
    assert kept_indices(method, ctx_of(keys, received=received)) == [0, 2, 6, 7]


def test_vatp_multiplies_attention_by_value_l1_norm():
    keys = torch.zeros(1, 1, 6, 2)  # uniform attention: value norms decide
    values = torch.tensor([1.0, 9.0, 2.0, 8.0, 0.5, 0.5])[:, None].expand(6, 2)[None, None].clone()
    queries = torch.zeros(1, 1, 1, 2)
    method = tz.get_method("vatp", budget=3, window_size=1)
    assert kept_indices(method, ctx_of(keys, values, queries)) == [1, 3, 5]  # 5 = the protected window


def test_expected_attention_mean_term_is_the_rotated_query_logit():
    torch.manual_seed(3)
    d, p = 8, 5
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    angle = torch.cat([p * inv, p * inv])
    cos, sin = angle.cos()[None], angle.sin()[None]
    q = torch.randn(1, 1, 1, d)  # one pre-RoPE query: mean = q, covariance = 0
    k = torch.randn(1, 1, 6, d)
    scores = expected_attention_scores(q, k, cos, sin, scaling=0.3, cov_weight=0.0)
    q_rot = q * cos + rotate_half(q) * sin
    assert torch.allclose(scores[0, 0], (k[0, 0] @ q_rot[0, 0, 0]) * 0.3, atol=1e-5)
    assert torch.allclose(unrotate(q_rot, cos, sin), q, atol=1e-6)


def test_expected_attention_covariance_term():
    d = 4
    q = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])[None, None]  # mean 0, variance 2 on axis 0
    k = torch.eye(d)[None, None]
    cos, sin = torch.ones(1, d), torch.zeros(1, d)  # no rotation
    scores = expected_attention_scores(q, k, cos, sin, scaling=1.0, cov_weight=1.0)
    assert torch.allclose(scores[0, 0], torch.tensor([1.0, 0, 0, 0]))  # 0.5 * var(=2) on axis 0


def test_replay_attention_max_matches_loop():
    torch.manual_seed(4)
    keys = torch.randn(1, 1, 7, 3)  # 4 stored + 3 replay
    queries = torch.randn(1, 2, 3, 3)
    out = replay_attention_max(queries, keys, 0.5, n_context=4, chunk=2)
    ref = torch.zeros(2, 4)
    for h in range(2):
        for j in range(3):
            logits = (keys[0, 0, : 4 + j + 1] @ queries[0, h, j]) * 0.5
            ref[h] = torch.maximum(ref[h], torch.softmax(logits, 0)[:4])
    assert torch.allclose(out[0, 0], ref.max(0).values, atol=1e-6)


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


def test_merge_evicted_weighted_mean():
    keys = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[None, None]
    values = torch.tensor([[2.0, 0.0], [4.0, 0.0], [0.0, 6.0]])[None, None]
    kept = torch.tensor([[[0, 2]]])
    k, v = merge_evicted(keys, values, kept, torch.ones(1, 1, 2, dtype=torch.bool), None, threshold=0.5)
    # token 1 (identical key to token 0, distance 0 -> weight 1) merges into token 0: values average
    assert torch.allclose(v[0, 0], torch.tensor([[3.0, 0.0], [0.0, 6.0]]))
    assert torch.allclose(k[0, 0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_normalized_attention_divides_by_visibility():
    attn = torch.zeros(1, 1, 2, 3)
    attn[0, 0, :, 0] = 0.5
    attn[0, 0, 1, 2] = 0.5
    out = normalized_attention(attn)[0, 0]
    assert torch.allclose(out, torch.tensor([0.5, 0.0, 0.5]))  # token 2 is seen by one query only


def test_random_is_seeded():
    keys = torch.randn(1, 2, 20, 4)
    a = kept_indices(tz.get_method("kv.random", ratio=0.5, seed=3), ctx_of(keys))
    b = kept_indices(tz.get_method("kv.random", ratio=0.5, seed=3), ctx_of(keys))
    assert a == b and len(a) == 10 and not math.isnan(sum(a))
