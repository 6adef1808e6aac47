"""Runs without spaces longer than the budget: cut at grapheme boundaries, never an empty result without a note."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
import regex

import tokenzip as tz
from tokenzip.prompt.modes import URL, build_pieces
from tokenzip.prompt.segment import CHUNK, LONG_RUN, WORD, assemble


def letters(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def grapheme_bounds(text: str) -> set[int]:
    return {0, *(m.end() for m in regex.finditer(r"\X", text))}


def assert_from_original(result, text: str) -> None:
    """Every kept span is whole graphemes of ``text``, in order, and the output is those spans."""
    bounds = grapheme_bounds(text)
    for s in result.kept_spans:
        assert s.start in bounds and s.end in bounds
        assert result.text[s.out_start : s.out_start + s.end - s.start] == text[s.start : s.end]
    assert [s.start for s in result.kept_spans] == sorted(s.start for s in result.kept_spans)
    assert "".join(text[s.start : s.end] for s in result.kept_spans) == result.text


@pytest.mark.parametrize("method", ["head", "tail", "random", "llmlingua"])
def test_a_run_larger_than_the_budget_keeps_part_of_it(tiny, method):
    text = letters(3000)
    r = tz.prompt.compress(text, ratio=0.5, method=method, scorer=tiny)
    assert r.tokens_before > 2000 and r.budget == r.tokens_before - int(r.tokens_before * 0.5)
    assert r.tokens_after <= r.budget and r.budget - r.tokens_after <= max(5, 0.02 * r.budget), r.tokens_after
    assert not r.notes
    assert_from_original(r, text)


def test_runs_are_cut_into_chunks_only_when_over_long():
    word = "x" * LONG_RUN
    pieces = build_pieces(f"{word} {word}y end", "text", [])
    words = [pieces.piece_text(i) for i in range(len(pieces)) if pieces.category[i] == WORD]
    assert words[0] == word  # a run of LONG_RUN graphemes is still one word
    assert "".join(words[1:-1]) == word + "y" and max(len(w) for w in words[1:-1]) == CHUNK
    assert words[-1] == "end"


@pytest.mark.parametrize("unit", ["e\u0301", "👩‍👩‍👧", "🇫🇷", "नमस्ते", "x"])
def test_chunks_of_a_run_end_at_grapheme_boundaries(tiny, unit):
    text = "start " + unit * 300 + " end"
    pieces = build_pieces(text, "text", [])
    bounds = grapheme_bounds(text)
    assert all(int(s) in bounds and int(e) in bounds for s, e in zip(pieces.start, pieces.end))
    assert len(pieces) > 10
    r = tz.prompt.compress(text, ratio=0.6, method="random", scorer=tiny)
    assert 0 < r.tokens_after <= r.budget
    assert_from_original(r, text)


def test_a_very_long_line_is_compressed(tiny):
    """100k characters without a space (it took over 6 minutes and came back empty): a real, fitted result."""
    text = letters(100_000, seed=1)
    r = tz.prompt.compress(text, ratio=0.5, method="head", scorer=tiny)
    assert r.tokens_after <= r.budget and r.budget - r.tokens_after <= max(5, 0.02 * r.budget)
    assert text.startswith(r.text) and not r.notes


def test_email_pattern_still_matches_addresses():
    found = [m.group() for m in regex.finditer(URL, "mail bob.x+y@ex-ample.co.uk, or see www.a.org/q?x=1 now")]
    assert found == ["bob.x+y@ex-ample.co.uk", "www.a.org/q?x=1"]
    assert [m.group() for m in regex.finditer(URL, "a" * 5000 + "@b.c")] == ["a" * 5000 + "@b.c"]


def test_sentence_larger_than_the_budget_is_explained(tiny):
    """extractive keeps whole sentences; when none fits nothing would be left, and that is an error saying so (issue
    23: the contract, docs/prompt.md), never a text that comes back empty."""
    text = " ".join(letters(12, seed=i) for i in range(200)) + "."
    with pytest.raises(tz.TokenzipError, match="not one sentence .* nothing would be left: give a larger budget"):
        tz.prompt.compress(text, ratio=0.5, method="extractive", scorer=tiny)


def test_budget_smaller_than_any_word_is_explained(tiny):
    text = "internationalization " * 3 + "antidisestablishmentarianism"
    with pytest.raises(tz.TokenzipError, match="head: not one word .* nothing would be left"):
        tz.prompt.compress(text, budget=1, method="head", scorer=tiny)


def test_chunk_units_map_back_in_order():
    text = letters(500, seed=3)
    pieces = build_pieces(text, "text", [])
    keep = np.zeros(pieces.n_units, dtype=bool)
    keep[::2] = True
    out, spans = assemble(pieces, keep)
    assert out == "".join(text[s:e] for s, e, _ in spans)
