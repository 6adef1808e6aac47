"""``positions="shared"``: one set of kept positions for every layer and head (what llama.cpp can evict)."""

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.kv.base import LayerContext
from tokenzip.kv.cache import layer_at, layer_entries
from tokenzip.ops.topk import keep_shared

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4
QUESTION = "\nQuestion: What is the special magic number?\nAnswer:"


def contexts(n_layers=3, heads=2, n=20, window=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_layers):
        keys = torch.randn(1, heads, n, 8, generator=g)
        queries = torch.randn(1, 2 * heads, window, 8, generator=g)
        out.append(LayerContext(layer_idx=i, num_layers=n_layers, keys=keys, values=torch.randn_like(keys),
                                queries=queries, token_valid=None, scaling=8 ** -0.5, is_sliding=False, adapter=None))
    return out


def test_keep_shared_is_the_top_of_the_best_score_over_layers_and_heads_and_keeps_the_newest():
    scores = [torch.tensor([[[0.0, 5, 1, 0, 0, 0], [0, 0, 0, 4, 0, 0]]]), torch.tensor([[[3.0, 0, 0, 0, 2, 0]]])]
    idx, valid = keep_shared(scores, torch.tensor([3]))
    # best per position: 3 5 1 4 2 0 -> top 2 are 1 and 3; the newest (5) is always kept
    assert idx.tolist() == [[1, 3, 5]] and valid.all()
    idx, _ = keep_shared(scores, torch.tensor([4]))
    assert idx.tolist() == [[0, 1, 3, 5]]


def test_shared_selection_is_one_set_for_every_layer_and_head():
    ctxs = contexts()
    method = tz.get_method("snapkv", ratio=0.5, window_size=4, positions="shared")
    results = method.compress_layers(ctxs)
    expected, _ = keep_shared([method.masked_scores(c) for c in ctxs], method.keep_counts(ctxs[0]))
    for ctx, result in zip(ctxs, results):
        assert result.indices.shape == (1, 2, 10)
        assert (result.indices == expected[:, None]).all()  # the same positions in every head of every layer
        assert torch.equal(result.keys, ctx.keys[:, :, expected[0]])
    per_head = tz.get_method("snapkv", ratio=0.5, window_size=4).compress_model(ctxs)
    assert any(not torch.equal(r.indices[:, 0], r.indices[:, 1]) for r in per_head)  # per head they differ here


def test_shared_positions_in_a_model_and_exact_at_ratio_0(tiny):
    model, tok = tiny("llama")
    pre = tz.kv.prefill(model, tok, TEXT, [tz.get_method("snapkv", ratio=0.5, window_size=8)])
    compressed = pre.compress(tz.get_method("snapkv", ratio=0.5, window_size=8, positions="shared"))
    kept = None
    for i in range(model.config.num_hidden_layers):
        before, _ = layer_entries(layer_at(pre.cache, i))
        after, _ = layer_entries(layer_at(compressed.cache, i))
        # each kept key row is found at one position of the dense cache; the positions agree across layers and heads
        where = [[int((before[0, h] == row).all(-1).nonzero()[0]) for row in after[0, h]]
                 for h in range(after.shape[1])]
        assert all(w == where[0] for w in where)
        kept = where[0] if kept is None else kept
        assert where[0] == kept
    assert len(kept) == pre.n_tokens - int(pre.n_tokens * 0.5) and kept[-1] == pre.n_tokens - 1
    dense = tz.kv.answer(model, tok, TEXT, QUESTION, None, max_new_tokens=8)[0].text
    at_zero = tz.kv.answer(model, tok, TEXT, QUESTION, tz.get_method("snapkv", ratio=0.0, positions="shared"),
                           max_new_tokens=8)[0].text
    assert at_zero == dense


def test_shared_positions_with_kvzip_and_chunks(tiny):
    model, tok = tiny("llama")
    method = tz.get_method("kvzip", budget=24, positions="shared", chunk_size=16)
    answers = tz.kv.answer(model, tok, TEXT, QUESTION, method, max_new_tokens=4)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp = pre.compress(method)
    lengths = {layer_entries(layer_at(comp.cache, i))[0].shape[2] for i in range(model.config.num_hidden_layers)}
    assert lengths == {24} and answers[0].new_tokens >= 1


@pytest.mark.parametrize("name, params, words", [
    ("adakv", {"ratio": 0.5}, "wraps another method"),
    ("pyramidkv", {"ratio": 0.5}, "its own budgets"),
    ("compactor", {"ratio": "auto"}, "ratio='auto'"),
    ("kivi", {"ratio": 0.5}, "wraps another method"),
])
def test_shared_positions_are_refused_where_selection_is_not_one_top_k(name, params, words):
    with pytest.raises(TokenzipError, match=words) as err:
        tz.get_method(name, positions="shared", **params)
    assert "methods that can: " in str(err.value) and "snapkv" in str(err.value)
