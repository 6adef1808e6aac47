"""One kv method per model: two (together or nested) are refused before any forward; non-models are refused."""

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.hooks import attach_method
from tokenzip.kv.cache import layer_length
from tokenzip.models.attachment import attachment
from tokenzip.models.decoders import DecoderAdapter

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4


def counting_forwards(model):
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls, handle


def test_two_kv_methods_together_are_refused_before_any_hook(tiny):
    model, tok = tiny("llama")
    snapkv, streaming = tz.get_method("snapkv", ratio=0.5), tz.get_method("streaming_llm", ratio=0.75)
    with pytest.raises(TokenzipError, match=r"got 2 kv methods \(kv.snapkv \(ratio 0.5\), kv.streaming_llm "
                                            r"\(ratio 0.75\)\).*multiply their ratios.*kivi.*evict=.*base="):
        with tz.compress(model, snapkv, streaming):
            pass
    assert not DecoderAdapter(model).decoder._forward_pre_hooks


def test_nested_kv_methods_are_refused_before_any_forward(tiny):
    """snapkv 0.5 inside streaming_llm 0.75 kept 22 of 172 entries, silently."""
    model, tok = tiny("llama")
    enc = tok(TEXT, return_tensors="pt")
    calls, handle = counting_forwards(model)
    try:
        with tz.compress(model, tz.get_method("streaming_llm", ratio=0.75)):
            with pytest.raises(TokenzipError, match="kv.snapkv \\(ratio 0.5\\) cannot be attached: "
                                                    "kv.streaming_llm \\(ratio 0.75\\) is already attached.*one kv "
                                                    "method per model"):
                with tz.compress(model, tz.get_method("snapkv", ratio=0.5)):
                    model.generate(**enc, max_new_tokens=2, do_sample=False)
            assert not calls
            # the outer method still works alone inside its block
            model.generate(**enc, max_new_tokens=2, do_sample=False)
    finally:
        handle.remove()
    # released on exit, also after an error inside the block: the next method attaches
    with pytest.raises(KeyError):
        with tz.compress(model, tz.get_method("knorm", ratio=0.5)):
            raise KeyError("inside the block")
    with tz.compress(model, tz.get_method("snapkv", ratio=0.5)):
        model.generate(**enc, max_new_tokens=2, do_sample=False)


def kept_lengths(model, enc):
    """The entries each layer's cache holds after a prefill (``generate`` of one token runs the prefill only)."""
    out = model.generate(**enc, max_new_tokens=1, do_sample=False, return_dict_in_generate=True)
    return [layer_length(layer) for layer in out.past_key_values.layers]


def test_one_kv_method_per_model_not_per_process(tiny):
    """Two models, one kv method each, both blocks open: each model's cache is compressed by its own method."""
    llama, tok = tiny("llama")
    qwen, qtok = tiny("qwen2")
    enc, qenc = tok(TEXT, return_tensors="pt"), qtok(TEXT, return_tensors="pt")
    n, qn = enc.input_ids.shape[1], qenc.input_ids.shape[1]
    with tz.compress(llama, tz.get_method("snapkv", ratio=0.5)), tz.compress(qwen, tz.get_method("knorm", ratio=0.25)):
        assert attachment(llama).kv.method.label() == "kv.snapkv (ratio 0.5)"
        assert attachment(qwen).kv.method.label() == "kv.knorm (ratio 0.25)"
        assert set(kept_lengths(qwen, qenc)) == {qn - int(qn * 0.25)}
        assert set(kept_lengths(llama, enc)) == {n - int(n * 0.5)}
    assert attachment(llama) is None and attachment(qwen) is None
    assert set(kept_lengths(llama, enc)) == {n}  # unhooked: the whole prefill is kept


def test_the_attachment_record_lives_on_the_model_for_the_outermost_block(tiny):
    """One record per model, created by the outermost block and removed when it exits (also on error); the
    attention modules point at it only while they have handlers."""
    model, tok = tiny("llama")
    adapter = DecoderAdapter(model)
    assert attachment(model) is None
    with pytest.raises(RuntimeError, match="inside"):
        with tz.compress(model, tz.get_method("fastv", ratio=0.5), tz.get_method("knorm", ratio=0.5)):
            record = attachment(model)
            assert record.kv.method.label() == "kv.knorm (ratio 0.5)"
            assert record.layers.method.label() == "layers.fastv (ratio 0.5)"
            assert model.config._attn_implementation == "tokenzip_sdpa"
            # the layers stage's handler then the kv stage's, on every attention module
            assert all(len(record.handlers[m]) == 2 for m in adapter.attention_modules)
            assert all(m._tokenzip_attachment is record for m in adapter.attention_modules)
            raise RuntimeError("inside the block")
    assert attachment(model) is None and record.handlers == {} and record.kv is None and record.layers is None
    assert not any(hasattr(m, "_tokenzip_attachment") for m in adapter.attention_modules)
    assert model.config._attn_implementation == "sdpa"


def test_wrappers_are_the_way_to_combine(tiny):
    """The combinations the refusal points to work in one block: kivi quantizes what snapkv's eviction keeps, adakv
    spreads snapkv's budget over the heads (the same entries per layer in all)."""
    model, tok = tiny("llama")
    enc = tok(TEXT, return_tensors="pt")
    n = enc.input_ids.shape[1]
    with tz.compress(model, tz.get_method("kivi", evict="snapkv", ratio=0.5)):
        out = model.generate(**enc, max_new_tokens=1, do_sample=False, return_dict_in_generate=True)
    layers = out.past_key_values.layers
    assert {layer_length(layer) for layer in layers} == {n - int(n * 0.5)}
    assert all(type(layer).__name__ != "DynamicLayer" for layer in layers)  # stored quantized
    with attach_method(model, tz.get_method("adakv", base="snapkv", ratio=0.5)) as runtime:
        model.generate(**enc, max_new_tokens=1, do_sample=False)
    heads = model.config.num_key_value_heads
    for i in runtime.targets:
        valid = runtime.masks.valid[i]
        assert int(valid.sum()) == heads * (n - int(n * 0.5))  # per head budgets, the layer's total unchanged
        assert len(set(valid.sum(-1).flatten().tolist())) > 1  # and not the same for every head


def test_a_module_that_is_not_a_transformers_model_is_refused():
    with pytest.raises(TokenzipError, match="kv stage works on Hugging Face decoder models \\(gemma3, .*llama, "
                                            ".*got a Linear, which has no transformers config"):
        with tz.compress(torch.nn.Linear(2, 2), tz.get_method("snapkv", ratio=0.5)):
            pass


def test_a_prefill_inside_an_attached_block_is_refused_before_any_forward(tiny):
    """tz.kv.prefill runs its own kv hooks; inside a `with tz.compress(...)` block both would route one call."""
    model, tok = tiny("llama")
    calls, handle = counting_forwards(model)
    try:
        with tz.compress(model, tz.get_method("snapkv", ratio=0.5)):
            with pytest.raises(TokenzipError, match="tz.kv.prefill runs its own kv hooks, but kv.snapkv "
                                                    "\\(ratio 0.5\\) is attached.*outside the block"):
                tz.kv.prefill(model, tok, TEXT, [tz.get_method("knorm", ratio=0.5)])
            with pytest.raises(TokenzipError, match="tz.kv.prefill runs its own kv hooks"):
                tz.kv.answer(model, tok, TEXT, "What is the special magic number?", "knorm")
        assert not calls
    finally:
        handle.remove()
    tz.kv.prefill(model, tok, TEXT, [tz.get_method("knorm", ratio=0.5)])  # outside the block it runs


def test_prefill_refuses_a_module_that_is_not_a_transformers_model(tiny):
    _, tok = tiny("llama")
    with pytest.raises(TokenzipError, match="has no transformers config"):
        tz.kv.prefill(torch.nn.Linear(2, 2), tok, TEXT)


def test_a_text_method_is_refused_by_compress_and_attach(tiny):
    from tokenzip.hooks import attach_method

    model, _ = tiny("llama")
    prompt_method = tz.get_method("extractive", ratio=0.5)
    with pytest.raises(TokenzipError, match="prompt.extractive does not hook into a model; compress"):
        with tz.compress(model, tz.get_method("snapkv", ratio=0.5), prompt_method):
            pass
    with pytest.raises(TokenzipError, match="prompt.extractive does not hook into a model"):
        attach_method(model, prompt_method)
    assert not model._forward_pre_hooks and not model.model._forward_pre_hooks  # nothing was hooked
