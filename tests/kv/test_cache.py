"""Real savings: evicted caches and quantized caches hold fewer bytes, and stay usable."""

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.hooks import attach_method
from tokenzip.kv.cache import QuantizedLayer, layer_entries, layer_length
from tokenzip.kv.runtime import target_layers
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.ops.quantize import quantized_bytes

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 8
QUESTION = "\nQuestion: What is the special magic number?\nAnswer: The special magic number is"


@pytest.mark.parametrize("bits,factor", [(4, 3.5), (2, 6.0)])
def test_quantized_layer_shrinks_fp16_cache(bits, factor):
    keys = torch.randn(1, 1, 16384, 64, dtype=torch.float16)
    layer = QuantizedLayer.from_tensors(keys, keys.clone(), bits=bits, residual=32, group=128)
    full = 2 * keys.numel() * keys.element_size()
    assert full / layer.nbytes() >= factor, full / layer.nbytes()
    assert layer.stored() == 16384
    k, _ = layer.entries()
    assert k.shape == keys.shape


def test_quantized_layer_grows_during_decoding():
    keys = torch.randn(1, 2, 100, 16)
    layer = QuantizedLayer.from_tensors(keys, keys, bits=4, residual=32, group=32)
    assert layer.n_quantized == 64 and layer.keys.shape[-2] == 36
    for _ in range(40):
        full_k, _ = layer.update(torch.randn(1, 2, 1, 16), torch.randn(1, 2, 1, 16))
    assert layer.stored() == 140 and full_k.shape[-2] == 140
    assert layer.keys.shape[-2] <= 32 + 32 and layer.n_quantized % 32 == 0
    assert sum(quantized_bytes(qk) for qk, _ in layer.blocks) > 0


def test_eviction_bytes_follow_the_ratio(tiny):
    model, tok = tiny("llama")
    method = tz.get_method("snapkv", ratio=0.5)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp = pre.compress(method)
    n, kept = pre.n_tokens, method.kept(pre.n_tokens)
    assert comp.bytes == pre.bytes * kept // n
    assert tz.kv.cache_bytes(comp.cache) == comp.bytes


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_kivi_alone_and_composed_with_eviction(tiny, family):
    model, tok = tiny(family)
    targets = target_layers(DecoderAdapter(model), False)
    alone = tz.get_method("kivi", bits=2)
    composed = tz.get_method("kivi", bits=2, evict="snapkv", ratio=0.5)
    pre = tz.kv.prefill(model, tok, TEXT, [alone, composed])
    a, c = pre.compress(alone), pre.compress(composed)
    assert all(isinstance(a.cache.layers[i], QuantizedLayer) for i in targets)
    assert a.achieved_ratio == 0 and c.achieved_ratio == pytest.approx(1 - composed.kept(pre.n_tokens) / pre.n_tokens)
    assert c.bytes < a.bytes < pre.bytes
    assert layer_length(c.cache.layers[targets[0]]) == composed.kept(pre.n_tokens)
    for comp in (a, c):
        text, n_new, _ = tz.kv.answer_from(model, tok, comp, QUESTION, max_new_tokens=4)
        assert n_new >= 0
    with tz.compress(model, composed):
        out = model.generate(**tok(TEXT + QUESTION, return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 3


def test_kivi_close_to_uncompressed_at_8_bits(tiny):
    model, tok = tiny("qwen3")
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    reference = model(**enc).logits[0, -1]
    method = tz.get_method("kivi", bits=8)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp, plain = pre.compress(method), pre.compress(None)
    q_ids = tok(QUESTION, return_tensors="pt", add_special_tokens=False).input_ids
    outs = []
    for c in (plain, comp):
        text, _, _ = tz.kv.answer_from(model, tok, c, QUESTION, max_new_tokens=5)
        outs.append(text)
    assert outs[0] == outs[1]
    assert reference.shape[0] == model.config.vocab_size and q_ids.shape[1] > 0


def test_zipcache_stores_salient_tokens_at_high_precision(tiny):
    model, tok = tiny("llama")
    method = tz.get_method("zipcache", salient=0.25, high_bits=4, low_bits=2)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp = pre.compress(method)
    layer = comp.cache.layers[0]
    n = pre.n_tokens
    assert isinstance(layer, QuantizedLayer) and layer.stored() == n
    first_bits = [int(qk["bits"]) for qk, _ in layer.blocks]
    assert first_bits[0] == 4 and all(b == 2 for b in first_bits[1:])
    n_salient = int(0.25 * n) // 8 * 8
    assert int(layer.blocks[0][0]["packed"].shape[-1]) * 2 == n_salient  # keys: 2 tokens per byte at 4 bits
    kivi2 = pre.compress(tz.get_method("kivi", bits=2))
    assert kivi2.bytes < comp.bytes < pre.bytes
    text, _, _ = tz.kv.answer_from(model, tok, comp, QUESTION, max_new_tokens=3)
    assert isinstance(text, str)


def test_quantizers_reject_ratios_that_would_do_nothing():
    with pytest.raises(TokenzipError, match="evict"):
        tz.get_method("kivi", ratio=0.5)
    with pytest.raises(TokenzipError, match="ratio"):
        tz.get_method("zipcache", ratio=0.5)
    with pytest.raises(TokenzipError, match="bits"):
        tz.get_method("kivi", bits=3)


def test_decoding_keeps_cache_under_budget(tiny):
    model, tok = tiny("llama")
    method = tz.get_method("decoding", budget=60, interval=8, base="knorm")
    enc = tok(TEXT, return_tensors="pt")
    sizes = []
    with attach_method(model, method) as runtime:
        hook = model.model.register_forward_hook(
            lambda m, a, o: sizes.append(max(layer_length(layer) for layer in runtime.cache.layers))
            if runtime.cache is not None else None
        )
        try:
            out = model.generate(**enc, max_new_tokens=80, min_new_tokens=80, do_sample=False)
        finally:
            hook.remove()
    assert out.shape[1] == enc.input_ids.shape[1] + 80
    assert enc.input_ids.shape[1] > 60 and max(sizes) <= 60 + 8
    assert min(sizes[1:]) >= 60  # compressed back to the budget, not below


def test_questions_see_original_positions(tiny):
    """After compression the question continues at position N (the original length), not at the cache size."""
    model, tok = tiny("gemma3")
    method = tz.get_method("streaming_llm", ratio=0.75)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp = pre.compress(method)
    seen = []
    hook = model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["position_ids"][0].tolist()),
                                                 with_kwargs=True)
    try:
        tz.kv.answer_from(model, tok, comp, QUESTION, max_new_tokens=2)
    finally:
        hook.remove()
    n_q = tok(QUESTION, add_special_tokens=False, return_tensors="pt").input_ids.shape[1]
    assert seen[0] == list(range(pre.n_tokens, pre.n_tokens + n_q))
    assert seen[1] == [pre.n_tokens + n_q]


@pytest.mark.parametrize("family", ["llama", "gemma3", "phi3"])
def test_answer_without_compression_equals_full_forward(tiny, family):
    model, tok = tiny(family)
    ctx_ids = tok(TEXT, return_tensors="pt").input_ids
    q_ids = tok(QUESTION, return_tensors="pt", add_special_tokens=False).input_ids
    full = model.generate(input_ids=torch.cat([ctx_ids, q_ids], 1), attention_mask=torch.ones(1, ctx_ids.shape[1] +
                          q_ids.shape[1], dtype=torch.long), max_new_tokens=6, do_sample=False, min_new_tokens=6)
    expected = tok.decode(full[0, ctx_ids.shape[1] + q_ids.shape[1]:], skip_special_tokens=True)
    for method in (None, tz.get_method("snapkv", ratio=0.0)):
        got = tz.kv.answer(model, tok, TEXT, QUESTION, method, max_new_tokens=6)[0]
        assert got.text == expected[: len(got.text)] and len(got.text) > 0


def test_query_aware_answering(tiny):
    model, tok = tiny("llama")
    out = tz.kv.answer(model, tok, TEXT, [QUESTION], "snapkv", query_aware=True, max_new_tokens=4)
    assert out[0].tokens_in > tok(TEXT, return_tensors="pt").input_ids.shape[1]


def test_shared_prefill_equals_one_by_one(tiny):
    model, tok = tiny("qwen2")
    methods = [tz.get_method(n, stage="kv", ratio=0.5) for n in ("snapkv", "h2o", "kvzip", "expected_attention")]
    shared = tz.kv.prefill(model, tok, TEXT, methods)
    for method in methods:
        a = tz.kv.answer_from(model, tok, shared.compress(method), QUESTION, max_new_tokens=5)[0]
        b = tz.kv.answer(model, tok, TEXT, QUESTION, method, max_new_tokens=5)[0].text
        assert a == b, method.name


def test_context_errors(tiny):
    model, tok = tiny("llama")
    with pytest.raises(TokenzipError, match="empty"):
        tz.kv.answer(model, tok, "   ", "q?")
    with pytest.raises(TokenzipError, match="positions"):
        tz.kv.answer(model, tok, "word " * 5000, "q?")
    with pytest.raises(TokenzipError, match="unknown kv method"):
        tz.kv.answer(model, tok, TEXT, "q?", "snapkvv")


def test_kvzip_reconstruction_is_shared_across_ratios_and_charged(tiny):
    model, tok = tiny("qwen2")
    quarter, half = tz.get_method("kvzip", ratio=0.25), tz.get_method("kvzip", ratio=0.5)
    shared = tz.kv.prefill(model, tok, TEXT, [quarter, half])
    first = shared.compress(quarter)
    assert len(shared.memo) == 1
    (_, replay_seconds), = shared.memo.values()
    second = shared.compress(half)  # reuses the reconstruction pass ...
    assert len(shared.memo) == 1 and second.compress_seconds >= replay_seconds  # ... but is charged for it
    fresh = tz.kv.prefill(model, tok, TEXT, [half]).compress(half)
    for a, b in zip(second.cache.layers, fresh.cache.layers):
        (ka, va), (kb, vb) = layer_entries(a), layer_entries(b)
        assert torch.equal(ka, kb) and torch.equal(va, vb)
    assert first.achieved_ratio < second.achieved_ratio


def test_kvzip_fast_self_replay_is_shared_with_its_auto_ratio(tiny):
    """The self-replay computes the max and the attention mass together, so ``ratio="auto"`` (which needs the mass)
    reuses what a fixed ratio computed on the same prefill, and keeps what a fresh prefill keeps."""
    model, tok = tiny("llama")
    fixed = tz.get_method("kvzip_fast", ratio=0.5)
    auto = tz.get_method("kvzip_fast", ratio="auto", tolerance=0.2)
    shared = tz.kv.prefill(model, tok, TEXT, [fixed, auto])
    shared.compress(fixed)
    reused = shared.compress(auto)
    assert len(shared.memo) == 1
    fresh = tz.kv.prefill(model, tok, TEXT, [auto]).compress(auto)
    for a, b in zip(reused.cache.layers, fresh.cache.layers):
        (ka, va), (kb, vb) = layer_entries(a), layer_entries(b)
        assert torch.equal(ka, kb) and torch.equal(va, vb)
