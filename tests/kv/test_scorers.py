"""Each scorer keeps the top-k of its documented score on hand-built cases."""

import math

import torch

import tokenzip as tz
from tokenzip.kv.base import LayerContext
from tokenzip.ops.attention import window_attention


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


def test_random_is_seeded():
    keys = torch.randn(1, 2, 20, 4)
    a = kept_indices(tz.get_method("kv.random", ratio=0.5, seed=3), ctx_of(keys))
    b = kept_indices(tz.get_method("kv.random", ratio=0.5, seed=3), ctx_of(keys))
    assert a == b and len(a) == 10 and not math.isnan(sum(a))
