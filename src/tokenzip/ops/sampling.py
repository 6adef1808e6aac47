"""Choosing the next token from a model's logits, with the knobs the OpenAI API defines.

In the order they apply: ``logit_bias`` (added to the logits of the given tokens), the frequency and
presence penalties (``logit[t] -= count[t] * frequency_penalty + (count[t] > 0) * presence_penalty`` over
the tokens generated so far), ``temperature`` (0: the most likely token; otherwise the logits divided by
it), and nucleus sampling (``top_p``: only the most likely tokens whose probabilities add up to ``top_p``,
Holtzman et al., ICLR 2020, "The Curious Case of Neural Text Degeneration"). A seeded generator makes a
draw repeatable. Log-probabilities reported to clients are those of the model's own distribution (the log
softmax of the logits, before any of the knobs).

Pure tensor functions: no model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence picks its tokens (OpenAI's names and ranges)."""

    temperature: float = 1.0  # 0 <= t <= 2; 0 is greedy
    top_p: float = 1.0  # 0 < p <= 1
    frequency_penalty: float = 0.0  # -2 <= f <= 2
    presence_penalty: float = 0.0  # -2 <= p <= 2
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> -100..100

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        return bool(self.frequency_penalty or self.presence_penalty)


def adjusted_logits(logits: torch.Tensor, params: SamplingParams, counts: torch.Tensor | None) -> torch.Tensor:
    """``logits`` ``(V,)`` with the logit bias and the penalties applied (``counts`` ``(V,)``: how often each token
    was generated so far; None when nothing was)."""
    out = logits.float()
    if params.logit_bias:
        ids = torch.tensor(list(params.logit_bias), device=out.device)
        out = out.index_add(0, ids, torch.tensor(list(params.logit_bias.values()), device=out.device))
    if counts is not None and params.penalized:
        out = out - counts * params.frequency_penalty - (counts > 0).float() * params.presence_penalty
    return out


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` ``(V,)`` restricted to the smallest set of most likely tokens whose mass reaches ``top_p`` (the most
    likely token always stays), renormalised."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(0) - sorted_probs  # mass of the tokens ranked above each one
    keep = before < top_p
    keep[0] = True
    kept = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return kept / kept.sum()


def next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None,
               counts: torch.Tensor | None = None) -> int:
    """The next token for ``logits`` ``(V,)``: the most likely one at temperature 0, else a draw from the adjusted,
    tempered, nucleus-restricted distribution with ``generator``."""
    scores = adjusted_logits(logits, params, counts)
    if params.greedy:
        return int(scores.argmax())
    # In double precision (a temperature such as 1e-300 is 0 in float32), shifted so that the largest is 0: a tiny
    # temperature sends the others to -inf (the most likely token), never to inf - inf.
    tempered = (scores.double() - scores.max().double()) / params.temperature
    probs = nucleus(torch.softmax(tempered, dim=-1), params.top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprobs(logits: torch.Tensor, token: int, top: int = 0) -> tuple[float, list[tuple[int, float]]]:
    """The model's log-probability of ``token`` under ``logits`` ``(V,)``, and its ``top`` most likely tokens with
    theirs (most likely first)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best: list[tuple[int, float]] = []
    if top > 0:
        values, ids = logprobs.topk(top)
        best = list(zip(ids.tolist(), values.tolist()))
    return float(logprobs[token]), best
