"""How many tokens a tokenizer needs for a text, and how fairly across languages.

* bytes per token and characters per token: UTF-8 bytes (characters) of the text divided by its
  tokens; higher means shorter sequences. Bytes per token is SuperBPE's efficiency measure
  (Liu et al., 2025, arXiv 2503.13423).
* fertility: tokens per word, words being runs separated by whitespace (Rust et al., 2021,
  arXiv 2012.15613). Meaningless for scripts written without spaces (Chinese, Japanese, Thai),
  where a "word" is a whole phrase.
* vocabulary use: the share of the vocabulary that occurs in the encoded text.
* round trip: whether decode(encode(text)) gives the text back exactly.
* unknown share: the share of tokens that are the unknown token. A tokenizer that maps a whole
  word it cannot spell to one unknown token looks cheap (few tokens) while it loses the text, so
  low premiums must be read together with this number.
* token premium: tokens(language) / tokens(English) on parallel text, i.e. how much more a
  speaker of that language pays for the same content (Petrov et al., 2023, arXiv 2305.15425).
  The byte premium, bytes(language) / bytes(English), is the same ratio for raw UTF-8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class TextStats:
    """Totals for one tokenizer on one list of texts."""

    texts: int
    bytes: int
    chars: int
    words: int
    tokens: int
    distinct_ids: int
    vocab_size: int
    roundtrip_exact: int
    unknown: int = 0
    first_roundtrip_failure: str | None = None

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens if self.tokens else float("nan")

    @property
    def chars_per_token(self) -> float:
        return self.chars / self.tokens if self.tokens else float("nan")

    @property
    def fertility(self) -> float:
        return self.tokens / self.words if self.words else float("nan")

    @property
    def vocab_use(self) -> float:
        return self.distinct_ids / self.vocab_size if self.vocab_size else float("nan")

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.tokens if self.tokens else float("nan")

    @property
    def roundtrip_rate(self) -> float:
        return self.roundtrip_exact / self.texts if self.texts else float("nan")

    def row(self) -> dict[str, Any]:
        return {
            "texts": self.texts, "bytes": self.bytes, "chars": self.chars, "words": self.words,
            "tokens": self.tokens, "bytes/token": self.bytes_per_token, "chars/token": self.chars_per_token,
            "fertility": self.fertility, "vocab use": self.vocab_use, "distinct ids": self.distinct_ids,
            "round trip": self.roundtrip_rate, "not exact": self.texts - self.roundtrip_exact,
            "unknown share": self.unknown_share, "first round-trip failure": self.first_roundtrip_failure,
        }


def text_stats(texts: Sequence[str], ids: Sequence[Sequence[int]], decoded: Sequence[str],
               vocab_size: int, unk_id: int | None = None) -> TextStats:
    """Totals from texts, their token ids and the decoding of those ids."""
    exact = 0
    unknown = 0
    failure = None
    distinct: set[int] = set()
    for text, tokens, back in zip(texts, ids, decoded):
        distinct.update(tokens)
        if unk_id is not None:
            unknown += sum(1 for t in tokens if t == unk_id)
        if back == text:
            exact += 1
        elif failure is None:
            failure = first_difference(text, back)
    return TextStats(
        texts=len(texts),
        bytes=sum(len(t.encode("utf-8")) for t in texts),
        chars=sum(len(t) for t in texts),
        words=sum(len(t.split()) for t in texts),
        tokens=sum(len(x) for x in ids),
        distinct_ids=len(distinct),
        vocab_size=vocab_size,
        roundtrip_exact=exact,
        unknown=unknown,
        first_roundtrip_failure=failure,
    )


def first_difference(text: str, back: str, context: int = 25) -> str:
    """Where a decoded text first departs from the original, with some context on each side."""
    i = next((k for k, (x, y) in enumerate(zip(text, back)) if x != y), min(len(text), len(back)))
    lo = max(0, i - context)
    return f"at character {i}: {text[lo:i + context]!r} -> {back[lo:i + context]!r}"


def measure(tokenizer: Any, texts: Sequence[str]) -> TextStats:
    """Encode and decode ``texts`` with a ``LoadedTokenizer`` and total the counts."""
    ids = tokenizer.encode(texts)
    decoded = tokenizer.decode_batch(ids)
    return text_stats(texts, ids, decoded, tokenizer.vocab_size, tokenizer.unk_id)


def premium(tokens: int, reference_tokens: int) -> float:
    """Token premium: tokens in a language per token of the reference (English) for the same content."""
    return tokens / reference_tokens if reference_tokens else float("nan")
