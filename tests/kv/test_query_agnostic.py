"""Query-agnostic scorers without a second pass (compactor, leverage, cur, kvzip_fast) and ratio="auto"."""

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.kv.base import LayerContext
from tokenzip.kv.cache import layer_entries
from tokenzip.ops.attention import self_replay_attention
from tokenzip.ops.geometry import zscore

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 5
QUESTION = "\nQuestion: What is the special magic number?\nAnswer: The special magic number is"
NEW = ("compactor", "leverage", "cur", "kvzip_fast")


def ctx_of(keys, values=None, queries=None, valid=None, scaling=1.0):
    values = torch.ones_like(keys) if values is None else values
    return LayerContext(layer_idx=0, num_layers=1, keys=keys, values=values, queries=queries, token_valid=valid,
                        scaling=scaling, is_sliding=False, adapter=None)


def kept_indices(method, ctx):
    return method.compress_layer(ctx).keys[0, 0]


def kept_positions(method, ctx):
    """Positions of the kept keys (the keys are unique rows, found back in the context)."""
    kept = kept_indices(method, ctx)
    return sorted(int((ctx.keys[0, 0] == row).all(-1).nonzero()[0]) for row in kept)


def hand_leverage(x):
    """diag(X (X^T X)^-1 X^T) of the centred rows, in float64."""
    x = x.double() - x.double().mean(0)
    return (x @ torch.linalg.pinv(x.T @ x) * x).sum(-1)


def outlier_keys():
    """Seven keys in the plane of the first two axes (spread unevenly), one along the third axis (index 5)."""
    plane = torch.tensor([[1.0, 0.2], [0.9, -0.1], [1.1, 0.0], [0.2, 1.0], [-0.8, 0.6], [1.0, 1.0], [0.5, -0.7]])
    keys = torch.zeros(8, 4)
    keys[[0, 1, 2, 3, 4, 6, 7], :2] = plane
    keys[5] = torch.tensor([0.3, 0.1, 2.0, 0.0])
    return keys


def test_leverage_keeps_the_key_outside_the_span_of_the_others():
    keys = outlier_keys()
    expected = hand_leverage(keys)
    assert int(expected.argmax()) == 5 and expected[5] > 0.85  # 1 - 1/n: centring takes one direction
    ctx = ctx_of(keys[None, None])
    assert kept_positions(tz.get_method("leverage", budget=1), ctx) == [5]
    top4 = sorted(expected.argsort(descending=True)[:4].tolist())
    gaps = expected.sort(descending=True).values
    assert gaps[3] - gaps[4] > 0.05  # no near-tie at the cut
    assert kept_positions(tz.get_method("leverage", ratio=0.5, sketch=0), ctx) == top4


def test_leverage_sketch_approximates_exact_scores():
    torch.manual_seed(0)
    keys = torch.randn(1, 1, 300, 64) @ torch.randn(64, 64)
    keys[0, 0, 17] += 40 * torch.randn(64)  # one key far from the others
    sketched = tz.get_method("leverage", budget=1, sketch=32)
    exact = tz.get_method("leverage", budget=1, sketch=0)
    ctx = ctx_of(keys)
    assert kept_positions(sketched, ctx) == kept_positions(exact, ctx) == [17]


def test_compactor_keeps_top_of_blended_score_and_protects_ends():
    torch.manual_seed(2)
    n = 12
    keys = torch.randn(1, 1, n, 4)
    queries = torch.randn(1, 2, n, 4)
    values = torch.rand(1, 1, n, 4) + 0.5
    method = tz.get_method("compactor", ratio=0.5, sinks=1, recent=1, chunk=n, blending=0.7, sketch=0)
    ctx = ctx_of(keys, values, queries)
    # the documented score, by hand: z(leverage) * blending + z(pool3(A * ||v||)) over the unprotected middle
    middle = torch.zeros(1, 1, n, dtype=torch.bool)
    middle[..., 1 : n - 1] = True
    lev = torch.zeros(n)
    lev[1 : n - 1] = hand_leverage(keys[0, 0, 1 : n - 1]).float()
    attn = torch.softmax(queries @ keys.transpose(-1, -2), dim=-1).sum(2).mean(1, keepdim=True)  # (1, 1, n)
    weighted = attn * values.norm(dim=-1)
    pooled = torch.stack([weighted[0, 0, max(i - 1, 0) : i + 2].mean() for i in range(n)])[None, None]
    score = 0.7 * zscore(lev[None, None], middle) + zscore(pooled, middle)
    score[~middle] = float("inf")
    keep = method.kept(n)
    ordered = score[0, 0].sort(descending=True).values
    assert ordered[keep - 1] - ordered[keep] > 1e-3  # no near-tie at the cut
    expected = sorted(score[0, 0].argsort(descending=True)[:keep].tolist())
    assert kept_positions(method, ctx) == expected
    assert 0 in expected and n - 1 in expected


def test_cur_prefers_rows_outlying_in_keys_and_values():
    keys = outlier_keys()  # index 5 is the key outlier
    values = outlier_keys()[[5, 1, 2, 3, 4, 0, 6, 7]]  # the value outlier is at index 0 ...
    values[5] = torch.tensor([0.0, 0.0, 0.0, 1.7])  # ... and index 5 is a value outlier as well
    ctx = ctx_of(keys[None, None], values[None, None])
    expected = hand_leverage(keys) * hand_leverage(values)
    assert int(expected.argmax()) == 5
    assert kept_positions(tz.get_method("cur", budget=1, sinks=0), ctx) == [5]
    assert kept_positions(tz.get_method("cur", budget=2, sinks=1), ctx) == [0, 5]  # the first token is a sink


def test_kvzip_fast_self_keeps_the_key_a_query_re_reads():
    """Each query matches one key exactly (the copy target of a re-read); the unmatched ones are dropped."""
    n, d = 8, 8
    keys = torch.eye(d)[None, None] * 0.1
    queries = torch.zeros(1, 1, n, d)
    for t, target in enumerate([3, 3, 6, 3, 6, 3, 6, 3]):  # queries look for keys 3 and 6 only
        queries[0, 0, t, target] = 40.0
    ctx = ctx_of(keys, queries=queries)
    method = tz.get_method("kvzip_fast", budget=2)
    scores = self_replay_attention(queries, keys, 1.0, queries)[0]
    ctx.extra = {"kvzip": scores, "mass": scores}
    assert kept_positions(method, ctx) == [3, 6]


def test_ratio_auto_is_refused_by_methods_that_cannot_choose():
    with pytest.raises(TokenzipError, match="snapkv cannot choose its own ratio.*compactor"):
        tz.get_method("snapkv", ratio="auto")
    with pytest.raises(TokenzipError, match="budget"):
        tz.get_method("compactor", ratio="auto", budget=10)
    with pytest.raises(TokenzipError, match="tolerance"):
        tz.get_method("leverage", ratio="auto", tolerance=1.5)


@pytest.mark.parametrize("name", NEW)
def test_auto_tolerance_zero_keeps_everything_and_a_loose_one_removes(tiny, name):
    model, tok = tiny("gemma3")
    strict = tz.get_method(name, ratio="auto", tolerance=0.0)
    loose = tz.get_method(name, ratio="auto", tolerance=0.5, max_ratio=0.8)
    pre = tz.kv.prefill(model, tok, TEXT, [strict, loose])
    assert pre.compress(strict).achieved_ratio == 0.0
    assert strict.chosen_ratios and all(r == [0.0] for r in strict.chosen_ratios.values())
    comp = pre.compress(loose)
    assert 0.0 < comp.achieved_ratio <= 0.8
    assert sorted(loose.chosen_ratios) == [1, 3]  # gemma3's global layers, each with its own ratio
    assert all(0.0 <= r[0] <= 0.8 for r in loose.chosen_ratios.values())
    assert tz.kv.answer_from(model, tok, comp, QUESTION, max_new_tokens=3)[1] >= 0


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])
def test_kvzip_fast_full_replay_keeps_what_kvzip_keeps(tiny, family):
    model, tok = tiny(family)
    kvzip = tz.get_method("kvzip", ratio=0.5)
    exact = [tz.get_method("kvzip_fast", ratio=0.5, replay="full", stop_early=stop) for stop in (False, True)]
    pre = tz.kv.prefill(model, tok, TEXT, [kvzip, *exact])
    reference = pre.compress(kvzip)
    for method in exact:
        comp = pre.compress(method)
        for i, (a, b) in enumerate(zip(reference.cache.layers, comp.cache.layers)):
            (ka, va_), (kb, vb_) = layer_entries(a), layer_entries(b)
            assert torch.equal(ka, kb) and torch.equal(va_, vb_), (method.stop_early, i)
            va, vb = reference.masks.valid.get(i), comp.masks.valid.get(i)
            assert (va is None and vb is None) or torch.equal(va, vb)


def test_shared_prefill_does_not_widen_another_methods_window(tiny):
    """A prefill capturing every query (for compactor) gives snapkv its own 64-query window all the same."""
    model, tok = tiny("llama")
    snapkv = tz.get_method("snapkv", ratio=0.5, window_size=8)
    alone = tz.kv.prefill(model, tok, TEXT, [snapkv]).compress(snapkv)
    shared = tz.kv.prefill(model, tok, TEXT, [snapkv, tz.get_method("compactor", ratio=0.5)]).compress(snapkv)
    for a, b in zip(alone.cache.layers, shared.cache.layers):
        assert torch.equal(a.keys, b.keys)


def test_keys_unrotated_and_rotated_further_agree_with_the_rotary_embedding(tiny):
    from tokenzip.kv.runtime import KVRuntime
    from tokenzip.ops.rope import rotate_half

    model, tok = tiny("llama")
    pre = tz.kv.prefill(model, tok, TEXT)
    ctx = KVRuntime(model, None).context(pre.cache, 0)
    raw = ctx.unrotated_keys()
    n = ctx.n_tokens
    for shift in (0, 7):
        cos, sin = ctx.adapter.rotary(0, torch.arange(shift, n + shift)[None], raw)
        again = raw * cos[:, None] + rotate_half(raw) * sin[:, None]
        assert torch.allclose(again, ctx.rotated(ctx.keys, shift), atol=1e-4)
