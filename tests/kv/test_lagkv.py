"""LagKV (Liang et al. 2025, arXiv 2504.04704): the documented score, what is always kept, exact at ratio 0."""

import math

import pytest
import torch

import tokenzip as tz
from tokenzip.kv.base import LayerContext
from tokenzip.kv.cache import layer_length
from tokenzip.kv.runtime import target_layers
from tokenzip.models.decoders import DecoderAdapter

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 5
QUESTION = "\nQuestion: What is the special magic number?\nAnswer: The special magic number is"


def ctx_of(keys, values, valid=None):
    return LayerContext(layer_idx=0, num_layers=1, keys=keys, values=values, queries=None, token_valid=valid,
                        scaling=1.0, is_sliding=False, adapter=None)


def kept_indices(method, ctx, row=0, head=0):
    idx, valid = method.select(ctx, method.masked_scores(ctx), method.keep_counts(ctx))
    return idx[row, head][valid[row, head]].tolist()


def loop_lag_scores(x, start, lag, n_parts):
    """Softmax over each partition of the std over channels of x normalised by the next partition's min/max."""
    out = []
    for p in range(n_parts):
        part = [x[start + p * lag + t] for t in range(lag)]
        ref = [x[start + (p + 1) * lag + t] for t in range(lag)]
        d = len(part[0])
        lo = [min(float(r[c]) for r in ref) for c in range(d)]
        hi = [max(float(r[c]) for r in ref) for c in range(d)]
        spreads = []
        for token in part:
            z = [(float(token[c]) - lo[c]) / max(hi[c] - lo[c], 1e-6) for c in range(d)]
            mean = sum(z) / d
            spreads.append(math.sqrt(sum((v - mean) ** 2 for v in z) / (d - 1)))
        total = sum(math.exp(s) for s in spreads)
        out.extend(math.exp(s) / total for s in spreads)
    return out


def loop_priority(keys, values, sinks, lag):
    """The documented keep order (ops.geometry.lagkv_priority), computed token by token."""
    n = len(keys)
    n_parts = (n - sinks) // lag
    scored = max(n_parts - 1, 0) * lag
    tail = n - sinks - scored
    priority = [lag + 3.0] * sinks
    if scored:
        lag_k = loop_lag_scores(keys, sinks, lag, n_parts - 1)
        lag_v = loop_lag_scores(values, sinks, lag, n_parts - 1)
        both = [a + b for a, b in zip(lag_k, lag_v)]
        for p in range(n_parts - 1):
            block = both[p * lag : (p + 1) * lag]
            for score in block:
                rank = sum(other < score for other in block)
                priority.append(rank + score / 4)
    priority.extend(lag + 1.0 + j / tail for j in range(tail))
    return priority


def top_k(priority, k):
    order = sorted(range(len(priority)), key=lambda i: (-priority[i], i))
    return sorted(order[:k])


def test_a_token_spread_across_channels_is_kept_over_flat_ones():
    # sinks=1, lag=4: partition [1..5) is judged against [5..9); [5..9) and [9..10) are the tail
    ref = [[0.0, 0.0], [1.0, 1.0], [0.5, 0.2], [0.3, 0.9]]  # per channel: min 0, max 1
    part = [[0.5, 0.5], [0.0, 1.0], [0.4, 0.4], [0.6, 0.6]]  # token 2 (index 1 in the partition) has the spread
    keys = torch.tensor([[9.0, 9.0], *part, *ref, [2.0, 2.0]])[None, None]
    values = torch.ones_like(keys)
    method = tz.get_method("lagkv", budget=7, sinks=1, lag=4)
    assert kept_indices(method, ctx_of(keys, values)) == [0, 2, 5, 6, 7, 8, 9]


@pytest.mark.parametrize("budget", range(8, 17))
def test_kept_indices_are_the_top_k_of_the_documented_score(budget):
    torch.manual_seed(0)
    keys, values = torch.randn(1, 2, 16, 6), torch.randn(1, 2, 16, 6)  # 2 sinks, 3 partitions of 4, 2 left over
    method = tz.get_method("lagkv", budget=budget, sinks=2, lag=4)
    ctx = ctx_of(keys, values)
    for head in range(2):
        expected = loop_priority(keys[0, head].tolist(), values[0, head].tolist(), sinks=2, lag=4)
        assert method.score(ctx)[0, head].tolist() == pytest.approx(expected, abs=1e-5)
        kept = kept_indices(method, ctx, head=head)
        assert kept == top_k(expected, budget)
        assert set(range(2)) | set(range(10, 16)) <= set(kept)  # sinks, last partition and the remainder
        per_partition = [sum(2 + 4 * p <= i < 6 + 4 * p for i in kept) for p in range(2)]
        assert max(per_partition) - min(per_partition) <= 1  # the same top-k from every scored partition


def test_sinks_and_last_partition_survive_high_ratios():
    torch.manual_seed(1)
    keys, values = torch.randn(1, 1, 64, 8), torch.randn(1, 1, 64, 8)
    # 4 sinks, 7 partitions of 8 (the last, 52..60, is the tail with the 4 left over): 16 always kept
    method = tz.get_method("lagkv", ratio=0.7, sinks=4, lag=8)  # keeps 64 - int(44.8) = 20
    kept = kept_indices(method, ctx_of(keys, values))
    assert len(kept) == 20 and kept[:4] == [0, 1, 2, 3] and kept[-12:] == list(range(52, 64))
    exact = tz.get_method("lagkv", ratio=0.75, sinks=4, lag=8)  # keeps 16: the sinks and the tail only
    assert kept_indices(exact, ctx_of(keys, values)) == [0, 1, 2, 3, *range(52, 64)]
    tight = tz.get_method("lagkv", budget=6, sinks=4, lag=8)  # too small for sinks + tail: sinks, then recent
    assert kept_indices(tight, ctx_of(keys, values)) == [0, 1, 2, 3, 62, 63]


def test_short_context_keeps_sinks_and_recent_tokens():
    keys = torch.randn(1, 1, 12, 4)
    method = tz.get_method("lagkv", budget=5, sinks=2, lag=8)  # one partition after the sinks: no reference
    assert kept_indices(method, ctx_of(keys, torch.randn(1, 1, 12, 4))) == [0, 1, 9, 10, 11]


def test_left_padding_is_skipped():
    torch.manual_seed(2)
    keys, values = torch.randn(1, 1, 20, 4), torch.randn(1, 1, 20, 4)
    method = tz.get_method("lagkv", budget=9, sinks=1, lag=4)
    alone = kept_indices(method, ctx_of(keys, values))
    padded_k = torch.cat([torch.randn(1, 1, 3, 4), keys], 2)
    padded_v = torch.cat([torch.randn(1, 1, 3, 4), values], 2)
    valid = torch.tensor([[False] * 3 + [True] * 20])
    assert kept_indices(method, ctx_of(padded_k, padded_v, valid)) == [i + 3 for i in alone]


def test_bad_lag_is_refused():
    with pytest.raises(tz.TokenzipError, match="lag"):
        tz.get_method("lagkv", lag=1)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_ratio_zero_is_exact_on_a_tiny_model(tiny, family):
    model, tok = tiny(family)
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    reference = model.generate(**enc, max_new_tokens=6, do_sample=False)
    with tz.compress(model, tz.get_method("lagkv", ratio=0.0, sinks=2, lag=8)):
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert torch.equal(out, reference)


def test_half_ratio_keeps_sinks_and_tail_in_every_compressed_layer(tiny):
    model, tok = tiny("qwen2")
    adapter = DecoderAdapter(model)
    method = tz.get_method("lagkv", ratio=0.5, sinks=2, lag=8)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp = pre.compress(method)
    n = pre.n_tokens
    tail = 8 + (n - 2) % 8
    assert n - 2 >= 16 and method.kept(n) > 2 + tail  # two partitions or more, and room beyond sinks + tail
    for i in target_layers(adapter, False):
        before, after = pre.cache.layers[i], comp.cache.layers[i]
        assert layer_length(after) == method.kept(n)
        assert torch.equal(after.keys[:, :, :2], before.keys[:, :, :2])
        assert torch.equal(after.keys[:, :, -tail:], before.keys[:, :, -tail:])
    assert comp.achieved_ratio == pytest.approx(1 - method.kept(n) / n)
    assert tz.kv.answer_from(model, tok, comp, QUESTION, max_new_tokens=3)[0]
