"""Next-token choice (tokenzip.ops.sampling): bias, penalties, temperature, nucleus, seeded draws, log-probabilities."""

from __future__ import annotations

import math

import torch

from tokenzip.ops.sampling import SamplingParams, adjusted_logits, next_token, nucleus, token_logprobs

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])


def test_greedy_is_the_argmax_after_bias_and_penalties():
    assert next_token(LOGITS, SamplingParams(temperature=0)) == 0
    assert next_token(LOGITS, SamplingParams(temperature=0, logit_bias={3: 5.0})) == 3
    counts = torch.tensor([2.0, 0, 0, 0, 0])
    params = SamplingParams(temperature=0, frequency_penalty=0.4, presence_penalty=0.5)
    assert math.isclose(adjusted_logits(LOGITS, params, counts)[0].item(), 2.0 - 0.8 - 0.5, rel_tol=1e-6)
    assert next_token(LOGITS, params, counts=counts) == 1  # 0.7 < 1.0


def test_a_tiny_temperature_draws_the_most_likely_token():
    generator = torch.Generator().manual_seed(0)
    for t in (1e-3, 1e-30, 8e-246, 5e-324):  # logits / t alone overflows to inf (a nan distribution)
        assert next_token(LOGITS, SamplingParams(temperature=t), generator) == 0


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    torch.testing.assert_close(nucleus(probs, 0.75), torch.tensor([0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]))
    assert nucleus(probs, 0.8).nonzero().flatten().tolist() == [0, 1]  # 0.5 + 0.3 reaches 0.8: 0.15 is out
    assert nucleus(probs, 0.0).nonzero().flatten().tolist() == [0]  # the most likely token always stays
    assert nucleus(probs, 1.0) is probs


def test_seeded_draws_repeat_and_follow_the_distribution():
    params = SamplingParams(temperature=1.0)

    def draws(seed):
        g = torch.Generator().manual_seed(seed)
        return [next_token(LOGITS, params, g) for _ in range(4000)]

    a = draws(1)
    assert a == draws(1) and a != draws(2)
    expected = torch.softmax(LOGITS, -1)
    observed = torch.bincount(torch.tensor(a), minlength=5).float() / len(a)
    assert (observed - expected).abs().max() < 0.03
    hot = [next_token(LOGITS, SamplingParams(temperature=2.0), torch.Generator().manual_seed(s)) for s in range(2000)]
    assert hot.count(0) / len(hot) < observed[0]  # a higher temperature flattens the distribution


def test_logprobs_are_the_model_distribution():
    lp, top = token_logprobs(LOGITS, 2, top=2)
    assert math.isclose(lp, float(torch.log_softmax(LOGITS, -1)[2]), rel_tol=1e-6)
    assert [t for t, _ in top] == [0, 1] and sum(math.exp(v) for _, v in top) < 1
