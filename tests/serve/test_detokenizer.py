"""The streaming detokenizer decodes a bounded window per token, yet gives exactly what one decode of every id so far
gives: the same pieces, text, stop cuts and token starts as the one-shot detokenizer it replaced, on answers of
thousands of tokens through the real SmolLM2 (byte-level BPE) and Gemma 3 (byte fallback) tokenizers, with characters
split across tokens, skipped special tokens and stop strings that span tokens."""

from __future__ import annotations

import copy
import functools
import random
from typing import Any

import pytest
from tokenizers import decoders

from tokenzip.models.loading import load_tokenizer
from tokenzip.serve.generate import Detokenizer, _byte_decoder
from tokenzip.serve.split import TURN_MARKERS

pytestmark = pytest.mark.slow  # the real models' tokenizers

LINES = [f"{i}. Zürich café — 東京の{i * 7919 % 10007}番 🙂 naïve résumé, {i * 31} ÷ π ≈ {i / 3.14159:.3f}\n"
         for i in range(20)]  # about 700 tokens: 20 to 40 decode windows; the old decoder is quadratic
ANSWER = "".join(LINES)


class OneShot:
    """The detokenizer as it was: every push decodes every id so far and searches the text for stops."""

    def __init__(self, tok: Any, stops: list[str], markers: tuple[str, ...] = ()) -> None:
        self.tok, self.stops, self.markers = tok, list(stops) + [m for m in markers if m not in stops], markers
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.starts: list[int] = []
        self.text, self.sent, self.stopped, self.trim = "", 0, False, False

    def push(self, token: int) -> str:
        self.starts.append(len(self.text))
        self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
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
        if self.trim:
            self.text = self.text[: max(self.sent, len(self.text.rstrip()))]
        piece, self.sent = self.text[self.sent:], len(self.text)
        return piece

    def tokens_within(self, end: int) -> int:
        return sum(1 for s in self.starts if s < end)


def stream(detok: Any, ids: list[int]) -> dict[str, Any]:
    """Push ``ids`` as the server does (until a stop), recording what the server reads after every token."""
    pieces, within = [], []
    for token in ids:
        pieces.append(detok.push(token))
        within.append(detok.tokens_within(detok.sent))
        if detok.stopped:
            break
    pieces.append(detok.flush())
    return {"pieces": pieces, "within": within, "text": detok.text, "stopped": detok.stopped,
            "starts": detok.starts, "in_text": detok.tokens_within(len(detok.text))}


@functools.cache
def tokenizer(name: str) -> Any:
    """A packaged model's tokenizer; ``gemma-3-270m, stripped``: Gemma's, with the decoder of Llama 2's tokenizer,
    which strips the leading space of the text (so a decode that starts mid-answer differs from the whole's)."""
    tok = load_tokenizer(name.split(",")[0])
    if name.endswith("stripped"):
        tok = copy.deepcopy(tok)  # load_tokenizer's own is shared by every caller
        tok.backend_tokenizer.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                                           decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tok


def answer_ids(tok: Any) -> list[int]:
    return tok.encode(ANSWER, add_special_tokens=False)


def split_characters(tok: Any, seed: int = 0) -> list[int]:
    """The answer's ids with some replaced by tokens that are part of a character (byte-level pieces of multi-byte
    characters, byte-fallback tokens) and special tokens (which decoding skips), at random."""
    ids = answer_ids(tok)
    byte_like = [i for i, piece in enumerate(tok.convert_ids_to_tokens(list(range(len(tok)))))
                 if piece and (piece.startswith("<0x") or (len(piece) == 1 and ord(piece) >= 0x80))]
    special = list(tok.all_special_ids)
    rng = random.Random(seed)
    out = []
    for token in ids:
        roll = rng.random()
        out += [rng.choice(byte_like)] * (roll < 0.05) + [rng.choice(special)] * (0.05 <= roll < 0.07) + [token]
    return out


def runs(tok: Any) -> list[int]:
    """The answer's ids with, in the middle, characters written one byte per token (byte-fallback tokens, or the
    byte-level BPE pieces of single bytes) for longer than the decode window, then special tokens (which decoding
    skips) for longer than the window, then a lone first byte of a character (which a byte-fallback decoder turns,
    with the whole run it now follows, into one replacement character per byte: the text changes before the
    window)."""
    ids = answer_ids(tok)
    chars = {b: c for c, b in _byte_decoder().items()}
    fallback = tok.convert_tokens_to_ids("<0xE6>") != tok.unk_token_id
    byte = [tok.convert_tokens_to_ids(f"<0x{b:02X}>" if fallback else chars[b]) for b in range(256)]
    run = [byte[b] for b in ("東京大阪名古屋" * 5).encode()]
    half = len(ids) // 2
    return ids[:half] + run + [tok.all_special_ids[0]] * 40 + [byte[0xE2]] + ids[half:]


@pytest.mark.parametrize("name, case", [
    *[(name, case) for name in ("smollm2-135m", "gemma-3-270m")
      for case in ("plain", "stops and turn markers", "split characters", "runs")],
    *[("gemma-3-270m, stripped", case) for case in ("split characters", "runs")],
])
def test_streaming_gives_what_one_decode_of_every_id_gives(name: str, case: str) -> None:
    tok = tokenizer(name)
    ids = {"split characters": split_characters, "runs": runs}.get(case, answer_ids)(tok)
    assert len(ids) > 500
    stops: list[str] = []
    if case != "plain":  # a long stop, held back all along; one that spans tokens, near the end
        stops = ["X" * 12, f"{17 * 7919 % 10007}番 🙂 na"]
    new = stream(Detokenizer(tok, stops, TURN_MARKERS if case != "plain" else ()), ids)
    old = stream(OneShot(tok, stops, TURN_MARKERS if case != "plain" else ()), ids)
    assert new == old
    if case == "plain":
        assert not new["stopped"] and new["text"] == tok.decode(ids, skip_special_tokens=True)
        assert "".join(new["pieces"]) == new["text"]
    if case == "stops and turn markers":
        assert new["stopped"] and new["text"] == ANSWER[: ANSWER.index(stops[1])]
        assert len(tok.encode(stops[1], add_special_tokens=False)) > 2
