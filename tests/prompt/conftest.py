"""Fixtures for the prompt stage: the tiny scorer, a word-level fake scorer with fixed scores."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tokenzip.prompt.scorer import CausalScorer
from tokenzip.testing import _WORDS, tiny_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread (no synchronisation cost per small op on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny():
    return tiny_model("llama")


def prose(n_words: int, seed: int = 0, period: float = 0.1) -> str:
    """Number-free English-like prose (so nothing in it is protected)."""
    rng = random.Random(seed)
    words = [w for w in _WORDS if w not in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                             "zero")]
    out = []
    for _ in range(n_words):
        out.append(rng.choice(words) + ("." if rng.random() < period else ""))
    return " ".join(out)


class WordScorer(CausalScorer):
    """A scorer whose tokens are whitespace-separated words, each with a fixed self-information.

    ``scores`` maps a word to its score (unknown words score 0); the context never matters, so the
    words kept under a word-count budget must be exactly the top-scoring ones.
    """

    def __init__(self, scores: dict[str, float], window: int = 4096) -> None:
        self.scores = scores
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []
        self.window = window
        self.overlap = 0
        self.max_positions = 8192
        self.forwards = 0
        self.tokenizer = str.split

    def _id(self, word: str) -> int:
        if word not in self.vocab:
            self.vocab[word] = len(self.words)
            self.words.append(word)
        return self.vocab[word]

    def encode(self, text: str):
        import regex

        spans = [m.span() for m in regex.finditer(r"\S+", text)]
        return [self._id(text[s:e]) for s, e in spans], np.array(spans, dtype=np.int64).reshape(-1, 2)

    def ids(self, text: str):
        return self.encode(text)[0]

    def surprisal(self, sequences):
        self.forwards += 1
        return [torch.tensor([float(self.scores.get(self.words[i], 0.0)) for i in t]) for _, t in sequences]


@pytest.fixture(scope="session")
def make_prose():
    return prose


@pytest.fixture(scope="session")
def word_scorer():
    return WordScorer


class ContextScorer(WordScorer):
    """Like :class:`WordScorer`, but a word seen earlier in the sequence (context or targets) is
    ``bonus`` nats less surprising: reading a question makes its words predictable, and so on."""

    def __init__(self, scores: dict[str, float], default: float = 1.0, bonus: float = 2.0) -> None:
        super().__init__(scores)
        self.default, self.bonus = default, bonus

    def surprisal(self, sequences):
        self.forwards += 1
        out = []
        for context, target in sequences:
            seen = {self.words[i].strip(".,?").lower() for i in context}
            values = []
            for i in target:
                w = self.words[i].strip(".,?").lower()
                values.append(self.scores.get(w, self.default) - (self.bonus if w in seen else 0.0))
                seen.add(w)
            out.append(torch.tensor(values))
        return out


@pytest.fixture(scope="session")
def context_scorer():
    return ContextScorer
