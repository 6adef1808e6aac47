"""One generated sequence (a *choice*): how it picks tokens, turns them into text, and when it stops.

A :class:`Choice` holds its sampling settings and its own seeded generator (so a seed gives the same text
whatever else runs in the same batch), the counts the penalties need, and a :class:`Detokenizer`, which turns
token ids into text pieces, cuts at the first stop sequence, and holds back what could still become one.
Log-probabilities travel with the text: a piece carries those of the tokens that start inside it.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.ops.sampling import SamplingParams, next_token, token_logprobs

WINDOW = 16  # tokens a Detokenizer decodes again before the newest ones (between WINDOW and 2 * WINDOW)


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

    The text is what one ``tok.decode`` of every id so far gives, but each token decodes only a window of the newest
    ids (``WINDOW`` to ``2 * WINDOW`` of them), so a long answer costs linear time, not quadratic: the window begins
    with the ids between the last two anchors (their decode: ``_context``; the text up to the last anchor is kept in
    ``_parts``), and what its decode gives after that context is the text after the last anchor. Anchors are set only
    where the text and the context end in a whole character and the context holds some text, so a character's bytes
    split across tokens, a decoder that strips the leading space, or skipped special tokens decode in the window as in
    the whole. When the window's decode does not begin with its context (a later token changed text before it, as a
    byte-fallback decoder does to a run of bytes that ends invalid), everything is decoded again and the window starts
    anew. Stop strings are searched only where the text changed since the last search (and a stop's length before it);
    where tokens start, by bisection.
    """

    def __init__(self, tok: Any, stops: list[str], markers: tuple[str, ...] = ()) -> None:
        self.tok, self.stops, self.markers = tok, list(stops) + [m for m in markers if m not in stops], markers
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.starts: list[int] = []  # where each token's text starts
        self.sent = 0
        self.stopped = False
        self.trim = False
        self._parts: list[str] = []  # the text up to the last anchor, in pieces (joined when asked for)
        self._head = 0  # their length
        self._tail = ""  # the text after them
        self._length: int | None = None  # the text cut here (at a stop, by flush); None: all of it
        self._start = self._anchor = 0  # the window decodes ids[_start:]; ids[_start:_anchor] decode to _context
        self._context = ""
        self._sorted = True  # starts never went back (tokens_within bisects them)

    @property
    def text(self) -> str:
        """The text so far (cut at a stop)."""
        whole = self._whole()
        return whole if self._length is None else whole[: self._length]

    def push(self, token: int) -> str:
        """Add a token; return the new text that is safe to send."""
        start = self._head + len(self._tail) if self._length is None else self._length
        self._sorted = self._sorted and (not self.starts or start >= self.starts[-1])
        self.starts.append(start)
        self.ids.append(token)
        window = self._decode(self._start)
        if window.startswith(self._context):
            tail = window[len(self._context):]
            if tail.endswith("\ufffd"):  # an incomplete character: wait for the next token
                return ""
            same = self._head + len(os.path.commonprefix([self._tail, tail]))
        else:  # text before the window changed: decode it all, and anchor the window anew
            tail = self._decode(0)
            if tail.endswith("\ufffd"):
                return ""
            same = len(os.path.commonprefix([self._whole(), tail]))
            self._parts, self._head, self._start, self._anchor, self._context = [], 0, 0, 0, ""
        self._tail = tail
        cut = self._first_stop(0 if self.stopped else same)
        if cut is not None:
            self._length, self.stopped, self.trim = cut[0], True, cut[1] in self.markers
            return ""
        self._length = None
        length = self._head + len(tail)
        safe = min(length - self.hold, length - self._trailing_space())
        piece = ""
        if safe > self.sent:
            piece, self.sent = self._since(self.sent)[: safe - self.sent], safe
        self._move_anchor()
        return piece

    def flush(self) -> str:
        """The rest of the text (the sequence ended)."""
        text = self.text
        if self.trim:
            text = text[: max(self.sent, len(text.rstrip()))]
            self._length = len(text)
        piece, self.sent = text[self.sent:], len(text)
        return piece

    def tokens_within(self, end: int) -> int:
        """How many tokens start before text position ``end``."""
        if self._sorted:
            return bisect.bisect_left(self.starts, end)
        return sum(1 for s in self.starts if s < end)

    # --- the text, in pieces ----------------------------------------------------------------------------------
    def _decode(self, start: int) -> str:
        return self.tok.decode(self.ids[start:], skip_special_tokens=True)

    def _whole(self) -> str:
        """The text of every id so far, uncut (its pieces joined into one, once)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return (self._parts[0] if self._parts else "") + self._tail

    def _since(self, start: int) -> str:
        """The text from position ``start`` on (joining only the pieces it needs)."""
        if start >= self._head:
            return self._tail[start - self._head:]
        pieces, at = [self._tail], self._head
        for part in reversed(self._parts):
            at -= len(part)
            pieces.append(part[max(0, start - at):])
            if at <= start:
                break
        return "".join(reversed(pieces))

    def _first_stop(self, same: int) -> tuple[int, str] | None:
        """The first stop string in the text, and where it starts: searched from a stop's length before what was
        sent, and not where the text is the ``same`` as at the last search (which found none there)."""
        length, cuts = self._head + len(self._tail), []
        for s in self.stops:
            start = max(0, self.sent - len(s), same - len(s) + 1 if s else 0)
            if start <= length and (i := self._since(start).find(s)) >= 0:
                cuts.append((start + i, s))
        return min(cuts) if cuts else None

    def _trailing_space(self) -> int:
        n = 0
        for part in [self._tail, *reversed(self._parts)]:
            kept = part.rstrip()
            n += len(part) - len(kept)
            if kept:
                break
        return n

    def _move_anchor(self) -> None:
        """Once ``WINDOW`` tokens followed the anchor, move the window on: it starts at the anchor and the anchor
        moves to the newest token, where the text (and the window's context) end in a whole character."""
        if len(self.ids) - self._anchor < WINDOW:
            return
        context = self._decode(self._anchor)
        if not context or context.endswith("\ufffd"):
            return
        if self._tail:
            self._parts.append(self._tail)
            self._head += len(self._tail)
        self._tail = ""
        self._start, self._anchor, self._context = self._anchor, len(self.ids), context


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
