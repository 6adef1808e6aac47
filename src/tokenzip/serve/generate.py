"""Greedy decoding from a compressed context, one token at a time, and incremental detokenization."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import torch


def answer_tokens(model: Any, compressed: Any, question_ids: torch.Tensor,
                  max_new_tokens: int) -> Iterator[int]:
    """Token ids of the greedy answer, one at a time (``tokenzip.kv.answer.answer_tokens``); closing the
    generator stops decoding and restores the cache, so the next question sees the same context."""
    kv_answer = importlib.import_module("tokenzip.kv.answer")  # the module (tokenzip.kv.answer is also a function)
    return kv_answer.answer_tokens(model, compressed, question_ids, max_new_tokens)


@torch.no_grad()
def plain_tokens(model: Any, ids: torch.Tensor, max_new_tokens: int) -> Iterator[int]:
    """Greedy tokens for a prompt too short to split (one token): ``model.generate``, no cache reuse."""
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False)
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    for t in out[0, ids.shape[1]:].tolist():
        if t in eos:
            return
        yield t


class Detokenizer:
    """Turns token ids into text pieces; cuts at the first stop string and holds back what could start one."""

    def __init__(self, tok: Any, stops: list[str]) -> None:
        self.tok, self.stops = tok, stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; return the new text that is safe to send."""
        self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return ""
        cuts = [i for i in (text.find(s, max(0, self.sent - len(s))) for s in self.stops) if i >= 0]
        if cuts:
            self.text, self.stopped = text[: min(cuts)], True
            return self.flush()
        self.text = text
        safe = len(text) - self.hold
        if safe <= self.sent:
            return ""
        piece, self.sent = text[self.sent:safe], safe
        return piece

    def flush(self) -> str:
        piece, self.sent = self.text[self.sent:], len(self.text)
        return piece
