"""Real weights: Gemma 3 270M answers a ~1,500-token needle prompt with and without KV compression."""

import pytest
import torch

import tokenzip as tz
from tokenzip.demo import needle_prompt
from tokenzip.hooks import attach
from tokenzip.kv.cache import layer_length

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def needle(gemma):
    model, tok = gemma
    prompt = needle_prompt(tok, 1500, number=739104, seed=3)
    enc = tok(prompt, return_tensors="pt")
    assert 1400 <= enc.input_ids.shape[1] <= 1700
    return prompt, enc


def _answer(model, tok, enc):
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    return tok.decode(out[0, enc.input_ids.shape[1]:])


def test_needle_uncompressed_and_snapkv(gemma, needle):
    model, tok = gemma
    _, enc = needle
    assert "739104" in _answer(model, tok, enc)
    method = tz.get_method("snapkv", ratio=0.5)
    with attach(model, method) as runtime:
        answer = _answer(model, tok, enc)
        full_layers = [i for i in range(18) if not runtime.adapter.is_sliding(i)]
        kept = [layer_length(runtime.cache.layers[i]) for i in full_layers]
    assert "739104" in answer
    n = enc.input_ids.shape[1]
    assert full_layers == [5, 11, 17]
    assert all(k <= method.kept(n) + 8 for k in kept)  # compressed global layers (+ generated tokens)


def test_needle_query_agnostic_kvzip(gemma, needle):
    model, tok = gemma
    prompt, _ = needle
    context, question = prompt.split("\nQuestion:")
    method = tz.get_method("kvzip", ratio=0.5)
    answers = tz.kv.answer(model, tok, context, "\nQuestion:" + question, method, max_new_tokens=8)
    assert "739104" in answers[0].text
    assert answers[0].achieved_ratio == pytest.approx(0.5, abs=0.01)
    assert answers[0].cache_bytes < answers[0].cache_bytes_before
