"""Pre-tokenization for the two stages of SuperBPE (Liu et al., 2025, arXiv 2503.13423).

Stage 1 (subwords) splits text the usual way, so no token can cross a word boundary:

* a word: an optional leading space and a run of letters and combining marks (``\\p{M}`` keeps
  Indic vowel signs inside their word);
* a group of at most three digits;
* a run of other symbols (punctuation, emoji) with an optional leading space;
* whitespace runs (all but the last space before a word).

Stage 2 (superwords) lifts the whitespace boundary: consecutive words and *single* punctuation
characters join into one piece, so learned merges can span spaces (``" of the"``, ``", and"``).
It keeps SuperBPE's other boundaries: digit groups, runs of two or more symbols and whitespace
other than a single space stay separate pieces, so no superword contains a digit, a symbol run
or a newline; and a colon followed by whitespace (``": "``) is always its own piece, so no token
can contain ``": "``. Every stage-2 piece is a concatenation of whole stage-1 pieces (the two
patterns share their alternatives), which is what lets stock BPE inference reproduce training.

The limit of four words per token is enforced by the trainer (``superbpe.py``), not here.
"""

from __future__ import annotations

from typing import Any

WORD = r" ?[\p{L}\p{M}]+"
DIGITS = r"\p{N}{1,3}"
SYMBOLS = r" ?[^\s\p{L}\p{M}\p{N}]+"
SPACE = r"\s+(?!\S)|\s+"
# one symbol character, not followed by another one, and not a colon followed by whitespace
ONE_SYMBOL = r" ?(?!:\s)[^\s\p{L}\p{M}\p{N}](?![^\s\p{L}\p{M}\p{N}])"

SUBWORD_PATTERN = f"{WORD}|{DIGITS}|{SYMBOLS}|{SPACE}"
SUPERWORD_PATTERN = f"(?:{WORD}|{ONE_SYMBOL})+|{DIGITS}|{SYMBOLS}|{SPACE}"


def pre_tokenizer(superwords: bool) -> Any:
    """The ``tokenizers`` pre-tokenizer of either stage: a regex Split, then the byte-level mapping."""
    from tokenizers import Regex, pre_tokenizers

    pattern = SUPERWORD_PATTERN if superwords else SUBWORD_PATTERN
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def splitter(superwords: bool) -> Any:
    """The regex Split alone (pieces of the raw text, before the byte-level mapping)."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(SUPERWORD_PATTERN if superwords else SUBWORD_PATTERN), behavior="isolated")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to visible characters (as in ``tokenizers``' ByteLevel)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_bytes(token: str) -> bytes:
    """The bytes a byte-level token stands for."""
    return bytes(CHAR_TO_BYTE[c] for c in token)
