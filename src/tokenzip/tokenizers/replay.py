"""An independent replay of SuperBPE training order, to check what stock inference produces.

Training applies merge 1, then merge 2, ... to every piece; stock BPE inference instead repeatedly
applies the lowest-ranked merge present in a piece. The two agree only when the merge list is
well-formed (no merge re-creates an existing token, no stage-1 merge can fire across a stage-1
boundary inside a stage-2 piece). ``replay_encode`` follows training order literally, with
Python's ``regex`` engine for the pretokenization patterns (the ``tokenizers`` library uses
Oniguruma), so equality with ``Tokenizer.encode`` on held-out text checks the tokenizer.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenzip.tokenizers.bpe import bpe_state
from tokenzip.tokenizers.pretokenize import BYTE_TO_CHAR, SUBWORD_PATTERN, SUPERWORD_PATTERN


def _apply_in_order(symbols: list[str], ranks: dict[tuple[str, str], int], low: int, high: int) -> list[str]:
    """Apply merges with ranks in [low, high) in increasing rank order, each to all its occurrences."""
    last = low - 1
    while len(symbols) > 1:
        best = None
        for pair in zip(symbols, symbols[1:]):
            r = ranks.get(pair)
            if r is not None and last < r < high and (best is None or r < best):
                best = r
        if best is None:
            break
        a, b = next(p for p in zip(symbols, symbols[1:]) if ranks.get(p) == best)
        out, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        symbols, last = out, best
    return symbols


def replay_encode(text: str, vocab: dict[str, int], merges: Sequence[tuple[str, str]], stage1_merges: int,
                  superwords: bool = True) -> list[int]:
    """Token ids of ``text`` following training order: stage-1 merges inside each word, then the rest
    across each superword piece."""
    import regex

    ranks = {tuple(m): i for i, m in enumerate(merges)}
    outer = regex.compile(SUPERWORD_PATTERN if superwords else SUBWORD_PATTERN)
    inner = regex.compile(SUBWORD_PATTERN)
    ids: list[int] = []
    for piece in outer.findall(text):
        symbols: list[str] = []
        for word in inner.findall(piece):
            chars = [BYTE_TO_CHAR[b] for b in word.encode("utf-8")]
            symbols += _apply_in_order(chars, ranks, 0, stage1_merges)
        symbols = _apply_in_order(symbols, ranks, stage1_merges, len(merges))
        ids += [vocab[s] for s in symbols]
    return ids


def check_against_stock(tok: Any, texts: Sequence[str], stage1_merges: int, superwords: bool = True) -> dict:
    """Encode ``texts`` with the stock tokenizer and by replay; count the texts and tokens that differ."""
    vocab, merges = bpe_state(tok)
    differ = tokens = 0
    first = None
    for text in texts:
        stock = tok.encode(text, add_special_tokens=False).ids
        ref = replay_encode(text, vocab, merges, stage1_merges, superwords)
        tokens += len(ref)
        if stock != ref:
            differ += 1
            first = first or text[:200]
    return {"texts": len(texts), "texts_differing": differ, "tokens": tokens, "first_difference": first}
