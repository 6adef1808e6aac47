"""Sampling as the OpenAI API defines it, through the official openai client on the tiny llama.

The tiny model's next-token distributions are broad (no token above 5% here, checked below), so draws with
different seeds differ and draws with one seed repeat for a reason, not by degeneracy.
"""

from __future__ import annotations

import math
from typing import Any

import openai
import pytest
import torch

MODEL = "tiny-llama"
PROMPT = "The quick brown fox jumps over the lazy dog"  # one paragraph: answered whole


def _chat(client: Any, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}], **kwargs)


def test_same_seed_same_text_different_seeds_different_text(client: Any) -> None:
    first = _chat(client, temperature=1.0, seed=1, max_tokens=8, logprobs=True, top_logprobs=1)
    assert all(t.top_logprobs[0].logprob < math.log(0.05) for t in first.choices[0].logprobs.content)  # broad
    again = _chat(client, temperature=1.0, seed=1, max_tokens=8)
    other = _chat(client, temperature=1.0, seed=2, max_tokens=8)
    assert again.choices[0].message.content == first.choices[0].message.content
    assert other.choices[0].message.content != first.choices[0].message.content
    # Sampled, not greedy: the draws are not all the most likely token.
    assert any(t.logprob < t.top_logprobs[0].logprob for t in first.choices[0].logprobs.content)


def test_n_returns_that_many_choices_streamed_alike(client: Any) -> None:
    r = _chat(client, n=3, temperature=1.0, seed=7, max_tokens=6, logprobs=True)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) == 3  # independent draws
    assert r.usage.completion_tokens == sum(len(c.logprobs.content) for c in r.choices)
    chunks = list(_chat(client, n=3, temperature=1.0, seed=7, max_tokens=6, stream=True))
    streamed = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
                for i in range(3)]
    assert streamed == [c.message.content for c in r.choices]
    done = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(done) == 3


def test_logprobs_sum_to_the_models_own_likelihood(client: Any, tiny_objects: Any) -> None:
    model, tok = tiny_objects
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=5,
                                  extra_body={"compression": "none"})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens == 8
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert token in top and len(top) == 5 and sum(math.exp(v) for v in top.values()) <= 1.0
        assert math.isclose(value, max(top.values()), abs_tol=1e-5)  # greedy: the chosen token is the most likely
    # The same greedy tokens, scored by one plain forward pass over prompt + completion.
    ids = tok(PROMPT, return_tensors="pt").input_ids
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                         output_scores=True, return_dict_in_generate=True, eos_token_id=None)
    margins = [float(s[0].topk(2).values[0] - s[0].topk(2).values[1]) for s in out.scores]
    assert min(margins) > 1e-4  # no near-tie decides a token
    with torch.no_grad():
        logits = model(out.sequences).logits[0, ids.shape[1] - 1:-1].float()
    picked = torch.log_softmax(logits, -1).gather(-1, out.sequences[0, ids.shape[1]:, None])[:, 0]
    assert math.isclose(sum(lp.token_logprobs), float(picked.sum()), abs_tol=1e-3)
    assert tok.decode(out.sequences[0, ids.shape[1]:]) == r.choices[0].text


def test_temperature_zero_and_top_p_zero_are_greedy(client: Any) -> None:
    greedy = _chat(client, temperature=0, max_tokens=8).choices[0].message.content
    assert _chat(client, temperature=1.0, top_p=0.0, seed=3, max_tokens=8).choices[0].message.content == greedy
    assert _chat(client, temperature=0, seed=99, max_tokens=8).choices[0].message.content == greedy


def test_stop_cuts_the_text_before_the_stop_sequence(client: Any) -> None:
    text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0).choices[0].text
    stop = next(text[k:k + 2] for k in range(2, len(text) - 2) if text[k:k + 2].strip() and
                text.find(text[k:k + 2]) == k)
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop])
    assert r.choices[0].text == text[: text.find(stop)] and r.choices[0].finish_reason == "stop"


def test_logit_bias_and_frequency_penalty(client: Any, tiny_objects: Any) -> None:
    model, tok = tiny_objects
    with torch.no_grad():
        logits = model(tok(PROMPT, return_tensors="pt").input_ids).logits[0, -1]
    # The logits span less than 1.5: a bias of 12 dominates; less 2 per use, it still does for 6 uses (12 - 2 * 5 =
    # 2 > 1.5), may or may not on the 7th (0), and never after (-2 or less).
    assert float(logits.max() - logits.min()) < 1.5
    x = int(tok(" the", add_special_tokens=False).input_ids[0])
    biased = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0, logprobs=0,
                                       logit_bias={str(x): 12})
    assert biased.choices[0].logprobs.tokens == [tok.decode([x])] * 10
    penalized = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0, logprobs=0,
                                          logit_bias={str(x): 12}, frequency_penalty=2.0)
    tokens = penalized.choices[0].logprobs.tokens
    assert tokens[:6] == [tok.decode([x])] * 6 and tokens.count(tok.decode([x])) in (6, 7)
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2, logit_bias={"-1": 1})
    assert err.value.body["param"] == "logit_bias"
