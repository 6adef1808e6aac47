"""Byte-level BPE and Unigram tokenizers built with stock Hugging Face ``tokenizers``.

BPE (Sennrich, Haddow and Birch, 2016, arXiv 1508.07909) over UTF-8 bytes mapped to visible
characters (GPT-2's byte-level alphabet), so every text encodes without unknown tokens and decodes
back exactly. Unigram (Kudo, 2018, arXiv 1804.10959) over the same alphabet. Everything written
here loads in stock ``tokenizers`` and ``transformers`` with no tokenzip code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tokenzip.tokenizers.pretokenize import pre_tokenizer

SPECIAL_TOKENS = ("<|endoftext|>",)


def alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _empty(model: Any, superwords: bool = False) -> Any:
    from tokenizers import Tokenizer, decoders

    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizer(superwords)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str] = SPECIAL_TOKENS,
              min_frequency: int = 2, progress: bool = True) -> Any:
    """Stock ``tokenizers`` BPE training under whitespace (subword) pretokenization."""
    from tokenizers import models, trainers

    tok = _empty(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(special_tokens), initial_alphabet=alphabet(),
                                  show_progress=progress)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def train_unigram(texts: Sequence[str], vocab_size: int, special_tokens: Sequence[str] = SPECIAL_TOKENS,
                  progress: bool = True) -> Any:
    """Stock ``tokenizers`` Unigram training over the byte-level alphabet."""
    from tokenizers import models, trainers

    tok = _empty(models.Unigram())
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                      initial_alphabet=alphabet(), show_progress=progress, max_piece_length=16)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def build_bpe(vocab: dict[str, int], merges: Sequence[tuple[str, str]], superwords: bool,
              special_tokens: Sequence[str] = SPECIAL_TOKENS) -> Any:
    """A byte-level BPE tokenizer from a vocabulary and an ordered merge list."""
    from tokenizers import AddedToken, models

    tok = _empty(models.BPE(vocab=dict(vocab), merges=[tuple(m) for m in merges]), superwords)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special_tokens])
    return tok


def bpe_state(tok: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and ordered merges of a BPE tokenizer."""
    model = json.loads(tok.to_str())["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"not a BPE tokenizer (model type {model.get('type')})")
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return model["vocab"], merges


def truncated(tok: Any, n_merges: int) -> Any:
    """The BPE tokenizer that keeps only the first ``n_merges`` merges (BPE vocabularies nest).

    Tokens no kept merge produces are removed from the vocabulary; every other part of the
    tokenizer (normalizer, pre-tokenizer, decoder, added tokens) is kept.
    """
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    model = data["model"]
    merges = model["merges"]
    pairs = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]
    produced_late = {a + b for a, b in pairs[n_merges:]} - {a + b for a, b in pairs[:n_merges]}
    model["merges"] = merges[:n_merges]
    model["vocab"] = {t: i for t, i in model["vocab"].items() if t not in produced_late}
    return Tokenizer.from_str(json.dumps(data))


def is_nested(tok: Any) -> bool:
    """Whether every merge only uses tokens that exist before it (base tokens or earlier merges).

    True for BPE trained merge by merge; false for merge lists converted from SentencePiece models
    (e.g. Gemma's), which are ordered by piece score, so cutting them does not give a smaller tokenizer.
    """
    vocab, merges = bpe_state(tok)
    produced = {a + b for a, b in merges}
    have = {t for t in vocab if t not in produced}
    for a, b in merges:
        if a not in have or b not in have:
            return False
        have.add(a + b)
    return True


def vocab_sizes_by_merges(tok: Any) -> list[int]:
    """Vocabulary size after each prefix of the merge list: entry ``n`` is the size with ``n`` merges."""
    vocab, merges = bpe_state(tok)
    produced = set()
    sizes = []
    all_produced = {a + b for a, b in merges}
    base = sum(1 for t in vocab if t not in all_produced)
    for a, b in merges:
        sizes.append(base + len(produced))
        produced.add(a + b)
    sizes.append(base + len(produced))
    return sizes
