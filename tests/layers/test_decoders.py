"""The layers stage inside decoder LLMs (tiny random models): FastV / DART / random with generation."""

from __future__ import annotations

import pytest
import torch

import tokenzip as tz
from tokenzip.testing import DECODER_FAMILIES, tiny_model

PROMPTS = [
    "the quick brown fox jumps over the lazy dog and the cat sat on the mat " * 5 + "what is the magic number?",
    "hello world, the city river is blue and the key value is 42 " * 4 + "answer:",
]


@pytest.fixture(scope="module", params=DECODER_FAMILIES)
def decoder(request):
    return tiny_model(request.param)


def generate(model, inputs, method=None, **kw):
    with torch.no_grad():
        if method is None:
            return model.generate(**inputs, max_new_tokens=6, do_sample=False, **kw)
        with tz.compress(model, method):
            return model.generate(**inputs, max_new_tokens=6, do_sample=False, **kw)


def test_ratio_zero_generation_equals_the_unmodified_model(decoder):
    model, tok = decoder
    inputs = tok(PROMPTS, padding=True, return_tensors="pt")
    reference = generate(model, inputs)
    for name in ("fastv", "dart"):
        assert torch.equal(generate(model, inputs, tz.get_method(name, ratio=0.0)), reference), name


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("name", ["fastv", "dart", "layers.random"])
def test_pruned_generation_batch_rows_match_batch_one(family, name):
    model, tok = tiny_model(family)
    method = tz.get_method(name, ratio=0.5)
    together = generate(model, tok(PROMPTS, padding=True, return_tensors="pt"), method,
                        output_logits=True, return_dict_in_generate=True)
    assert method.last_report is not None
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, tok([prompt], return_tensors="pt"), method, output_logits=True,
                         return_dict_in_generate=True)
        assert torch.equal(alone.sequences[0, -6:], together.sequences[i, -6:])
        for step in range(6):
            assert torch.allclose(alone.logits[step][0], together.logits[step][i], atol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2"])
def test_cached_decoding_matches_a_full_recomputation(family):
    """Generation after pruning uses the KV cache, positions and masks consistently.

    A full forward without cache over prompt + generated tokens, with the same tokens pruned (random
    pruning depends only on positions; protect_last grows with the generated tokens so the candidates
    stay the same), must give the logits the cached generation produced at each step. On gemma3 the
    pruned tokens lie inside the 16-token sliding window, so the window must be measured on positions.
    """
    model, tok = tiny_model(family)
    inputs = tok([PROMPTS[0]], return_tensors="pt")
    n, keep_last = inputs["input_ids"].shape[1], 6
    out = generate(model, inputs, tz.get_method("layers.random", ratio=0.5, protect_last=keep_last, seed=3),
                   output_logits=True, return_dict_in_generate=True)
    for g in range(1, 6):
        ids = out.sequences[:, : n + g]
        method = tz.get_method("layers.random", ratio=0.5, protect_last=keep_last + g, seed=3)
        with torch.no_grad(), tz.compress(model, method):
            logits = model(input_ids=ids, use_cache=False).logits
        assert logits.shape[1] == method.last_report.kept[0]
        assert torch.allclose(logits[0, -1], out.logits[g][0], atol=1e-4), f"step {g}"


def test_fastv_keeps_the_tokens_the_last_token_attends_to_most():
    model, tok = tiny_model("llama")
    inputs = tok([PROMPTS[0]], return_tensors="pt")
    from tokenzip.layers.runtime import attach_layers
    from tokenzip.ops.attention import last_tokens_attention

    captured = {}
    attention = model.model.layers[1].self_attn

    def grab(module, args, kwargs, output):
        captured["hidden"] = kwargs.get("hidden_states", args[0] if args else None)
        captured["pe"] = kwargs["position_embeddings"]

    hook = attention.register_forward_hook(grab, with_kwargs=True)
    method = tz.get_method("fastv", ratio=0.5, layers=(1,))
    try:
        with torch.no_grad(), attach_layers(model, method) as runtime:
            model(**inputs, use_cache=False)
    finally:
        hook.remove()
    # recompute layer 1's last-token attention by hand from its input
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    x = captured["hidden"]
    b, n, _ = x.shape
    q = attention.q_proj(x).view(b, n, -1, attention.head_dim).transpose(1, 2)
    k = attention.k_proj(x).view(b, n, -1, attention.head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, *captured["pe"])
    scores = last_tokens_attention(q, k, attention.scaling)[0]
    candidates = torch.arange(n)[(torch.arange(n) >= 4) & (torch.arange(n) < n - 32)]
    order = scores[candidates].argsort(descending=True, stable=True)
    expected = candidates[order[: len(candidates) - len(candidates) // 2]]
    kept_candidates = sorted(set(runtime.state.position[0].tolist()) & set(candidates.tolist()))
    assert kept_candidates == sorted(expected.tolist())


def test_no_cache_forward_returns_logits_for_the_kept_tokens():
    model, tok = tiny_model("mistral")
    inputs = tok(PROMPTS, padding=True, return_tensors="pt")
    method = tz.get_method("dart", ratio=0.5)
    with torch.no_grad(), tz.compress(model, method):
        logits = model(**inputs, use_cache=False).logits
    assert logits.shape[1] == max(method.last_report.kept)
    assert torch.isfinite(logits).all()


def test_decoder_errors():
    model, tok = tiny_model("llama")
    with pytest.raises(tz.TokenzipError, match="tome does not support llama.*dart, fastv"):
        with tz.compress(model, tz.get_method("tome", ratio=0.5)):
            pass
    with pytest.raises(tz.TokenzipError, match="fewer than the 4 leading \\+ 32 trailing"):
        with torch.no_grad(), tz.compress(model, tz.get_method("fastv", ratio=0.5)):
            model(**tok(["hello world"], return_tensors="pt"))
