"""One generated sequence (a *choice*): how it picks tokens, turns them into text, and when it stops.

A :class:`Choice` holds its sampling settings and its own seeded generator (so a seed gives the same text
whatever else runs in the same batch), the counts the penalties need, and a :class:`Detokenizer`, which turns
token ids into text pieces, cuts at the first stop sequence, and holds back what could still become one.
Log-probabilities travel with the text: a piece carries those of the tokens that start inside it.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.ops.sampling import SamplingParams, next_token, token_logprobs


@dataclass
class TokenLogprob:
    """One generated token's log-probability under the model, and the most likely alternatives (each as its text and
    its bytes); ``offset``: where the token's text starts in the choice's text."""

    token: str
    logprob: float
    top: list[tuple[str, float]]
    bytes: list[int] = field(default_factory=list)
    offset: int = 0


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = dict(zip(printable, printable)), 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {chr(c): b for b, c in chars.items()}


def token_bytes(tok: Any, token_id: int) -> bytes:
    """The bytes a token stands for: byte-fallback pieces (``<0xE2>``), byte-level BPE pieces, else its text."""
    piece = tok.convert_ids_to_tokens(token_id)
    if isinstance(piece, str):
        if m := re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece):
            return bytes([int(m.group(1), 16)])
        decoder = getattr(getattr(tok, "backend_tokenizer", None), "decoder", None)
        if type(decoder).__name__ == "ByteLevel" and all(ch in _byte_decoder() for ch in piece):
            return bytes(_byte_decoder()[ch] for ch in piece)
    return tok.decode([token_id]).encode()


def token_text(tok: Any, token_id: int) -> tuple[str, list[int]]:
    """A token as OpenAI shows it: its text, or ``bytes:\\xNN...`` when it is part of a character; and its bytes."""
    raw = token_bytes(tok, token_id)
    try:
        return raw.decode(), list(raw)
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw), list(raw)


class Detokenizer:
    """Text pieces from token ids; cuts at the first stop string and holds back what could start one.

    ``markers`` are stop strings that mark a new turn of the chat template: text cut there also loses the
    whitespace before it (so a chat answer does not end in the blank line that precedes the next turn).
    Trailing whitespace is therefore held back until non-space text follows or the sequence ends.
    """

    def __init__(self, tok: Any, stops: list[str], markers: tuple[str, ...] = ()) -> None:
        self.tok, self.stops, self.markers = tok, list(stops) + [m for m in markers if m not in stops], markers
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.starts: list[int] = []  # where each token's text starts
        self.text = ""
        self.sent = 0
        self.stopped = False
        self.trim = False

    def push(self, token: int) -> str:
        """Add a token; return the new text that is safe to send."""
        self.starts.append(len(self.text))
        self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return ""
        cuts = [(i, s) for s in self.stops if (i := text.find(s, max(0, self.sent - len(s)))) >= 0]
        if cuts:
            cut, stop = min(cuts)
            self.text, self.stopped, self.trim = text[:cut], True, stop in self.markers
            return ""
        self.text = text
        safe = min(len(text) - self.hold, len(text.rstrip()))
        if safe <= self.sent:
            return ""
        piece, self.sent = text[self.sent:safe], safe
        return piece

    def flush(self) -> str:
        """The rest of the text (the sequence ended)."""
        if self.trim:
            self.text = self.text[: max(self.sent, len(self.text.rstrip()))]
        piece, self.sent = self.text[self.sent:], len(self.text)
        return piece

    def tokens_within(self, end: int) -> int:
        """How many tokens start before text position ``end``."""
        return sum(1 for s in self.starts if s < end)


@dataclass
class Choice:
    """One sequence being generated for a request: ``index`` among the request's ``n`` choices."""

    index: int
    params: SamplingParams
    detok: Detokenizer
    generator: torch.Generator
    top_logprobs: int | None = None  # None: no logprobs asked
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    reported: int = 0  # logprobs already sent with a piece
    counts: torch.Tensor | None = None
    finish: str | None = None

    @classmethod
    def make(cls, index: int, params: SamplingParams, detok: Detokenizer, seed: int | None,
             top_logprobs: int | None) -> Choice:
        """A choice with its own generator: seeded from ``(seed, index)`` when a seed is given, else at random."""
        generator = torch.Generator()
        generator.manual_seed(secrets.randbits(63) if seed is None else hash((seed, index)) & ((1 << 63) - 1))
        return cls(index, params, detok, generator, top_logprobs)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token for ``logits`` ``(V,)`` (not yet part of the sequence: see :meth:`accept`)."""
        return next_token(logits, self.params, self.generator, self.counts)

    def accept(self, token: int, logits: torch.Tensor) -> None:
        """Make ``token`` part of the sequence: count it for the penalties, record its log-probability when asked."""
        if self.params.penalized:
            if self.counts is None:
                self.counts = torch.zeros(logits.shape[-1], device=logits.device)
            self.counts[token] += 1
        if self.top_logprobs is not None:
            lp, best = token_logprobs(logits, token, self.top_logprobs)
            tok = self.detok.tok
            text, raw = token_text(tok, token)
            self.logprobs.append(TokenLogprob(text, lp, [(token_text(tok, t)[0], v) for t, v in best], raw))
        self.tokens.append(token)

    def piece(self, token: int) -> tuple[str, list[TokenLogprob]]:
        """The text that ``token`` makes safe to send, and the log-probabilities of the tokens starting in it."""
        piece = self.detok.push(token)
        if self.logprobs and len(self.logprobs) == len(self.tokens):
            self.logprobs[-1].offset = self.detok.starts[-1]
        return piece, self._logprobs_upto(self.detok.tokens_within(self.detok.sent)) if piece else []

    def finish_text(self) -> tuple[str, list[TokenLogprob]]:
        """The held-back rest of the text when the sequence ends, and the log-probabilities not sent yet (all of them,
        except those of tokens that fall inside a stop sequence)."""
        piece = self.detok.flush()
        upto = self.detok.tokens_within(len(self.detok.text)) if self.detok.stopped else len(self.tokens)
        return piece, self._logprobs_upto(upto)

    def _logprobs_upto(self, upto: int) -> list[TokenLogprob]:
        if self.top_logprobs is None or upto <= self.reported:
            return []
        new, self.reported = self.logprobs[self.reported:upto], upto
        return new

    @property
    def text(self) -> str:
        return self.detok.text
