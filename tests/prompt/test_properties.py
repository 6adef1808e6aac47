"""Properties of the prompt stage on arbitrary Unicode text, ratios and budgets (hypothesis).

Whatever the text: the output is valid UTF-8 made of whole graphemes of the input, copied in the
input's order (question-aware methods may move one sentence or document to the end: tested apart),
joined only by whitespace; protected spans survive; the token count is the target tokenizer's and
the budget holds, or a note says why it cannot.
"""

from __future__ import annotations

import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenzip as tz
from tokenzip.prompt.modes import NUMBER, URL
from tokenzip.testing import _WORDS

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any character a str can hold in UTF-8 (no lone surrogates), with spaces and line breaks frequent enough.
CHARS = st.characters(blacklist_categories=("Cs",))
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "\n\n", " \n", "\r\n", "\u3000"])
PIECES = st.one_of(
    st.sampled_from(_WORDS),
    st.text(CHARS, min_size=1, max_size=12),
    st.from_regex(r"[0-9]{1,6}([.,][0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["https://example.org/a?b=1", "www.tokenzip.dev", "ann.lee@example.com", "e\u0301t\u00e9",
                     "👩‍👩‍👧", "🇫🇷🇯🇵", "東京タワー", "नमस्ते", "ZZkeep", "end."]),
    st.text(st.sampled_from("abcxyz"), min_size=65, max_size=200),  # an over-long run, cut into chunks
)


@st.composite
def texts(draw) -> str:
    parts = draw(st.lists(st.tuples(PIECES, SEPARATORS), max_size=60))
    return draw(st.sampled_from(["", " ", "\n"])) + "".join(p + s for p, s in parts)


SIZES = st.one_of(
    st.builds(lambda r: {"ratio": r}, st.floats(0.0, 0.95)),
    st.builds(lambda b: {"budget": b}, st.integers(1, 300)),
)


def grapheme_bounds(text: str) -> set[int]:
    return {0, *(m.end() for m in regex.finditer(r"\X", text))}


def check_copied(result, text: str, in_order: bool = True) -> None:
    """The output is the kept spans (whole graphemes of the input) joined by whitespace only."""
    out = result.text
    out.encode("utf-8")  # valid UTF-8: no lone surrogates
    bounds = grapheme_bounds(text)
    position = 0
    for s in sorted(result.kept_spans, key=lambda s: s.out_start):
        assert s.start in bounds and s.end in bounds and s.start < s.end, s
        assert out[s.out_start : s.out_start + s.end - s.start] == text[s.start : s.end]
        assert s.out_start >= position and not out[position : s.out_start].strip(), "joins are whitespace only"
        position = s.out_start + s.end - s.start
    assert not out[position:].strip()
    starts = [s.start for s in sorted(result.kept_spans, key=lambda s: s.out_start)]
    descents = sum(b < a for a, b in zip(starts, starts[1:]))
    assert descents == 0 if in_order else descents <= 1


def check_budget(result, count) -> None:
    assert result.tokens_after == count(result.text)
    if result.tokens_after > result.budget:
        assert result.notes, "over the budget without a note"
    if result.text.strip() == "" and result.tokens_before > 0 and result.budget > 0:
        assert result.notes, "an empty result without a note"


def compress(text, **kwargs):
    """``tz.prompt.compress``, or None when it refuses because not one unit fits and nothing would be left (the
    documented contract: an error, never an empty text)."""
    try:
        return tz.prompt.compress(text, **kwargs)
    except tz.TokenzipError as exc:
        assert "fits in the budget" in str(exc) and "nothing would be left" in str(exc), exc
        assert text.strip(), exc
        return None


def tiny_count(tiny):
    tokenizer = tiny[1]
    return lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]) if t else 0


@SETTINGS
@given(text=texts(), size=SIZES, method=st.sampled_from(["head", "tail", "random"]))
def test_position_methods_copy_whole_graphemes_in_order(tiny, text, size, method):
    r = compress(text, method=method, scorer=tiny, **size)
    if r is None:
        return
    check_copied(r, text)
    check_budget(r, tiny_count(tiny))


@SETTINGS
@given(text=texts(), size=SIZES, method=st.sampled_from(["llmlingua", "selective_context", "longllmlingua",
                                                         "extractive"]))
def test_scored_methods_copy_whole_graphemes_in_order(tiny, text, size, method):
    r = compress(text, method=method, scorer=tiny, **size)  # no question: nothing is reordered
    if r is None:
        return
    check_copied(r, text)
    check_budget(r, tiny_count(tiny))


@SETTINGS
@given(text=texts(), size=SIZES, method=st.sampled_from(["random", "llmlingua"]))
def test_protected_spans_survive(tiny, text, size, method):
    r = compress(text, method=method, scorer=tiny, keep=[r"ZZkeep"], **size)
    if r is None:
        return
    covered = set()
    for s in r.kept_spans:
        covered.update(range(s.start, s.end))
    for pattern in (NUMBER, URL, r"ZZkeep"):
        for m in regex.finditer(pattern, text):
            assert set(range(*m.span())) <= covered, (pattern, m.group())
    check_budget(r, tiny_count(tiny))


@SETTINGS
@given(text=texts(), size=SIZES, question=st.text(CHARS, min_size=1, max_size=30),
       method=st.sampled_from(["extractive", "longllmlingua"]))
def test_question_aware_methods_move_at_most_one_block_to_the_end(tiny, text, size, question, method):
    """With a question, the most relevant sentence (extractive) or document (longllmlingua) goes last."""
    r = compress(text, method=method, scorer=tiny, question=question, **size)
    if r is None:
        return
    check_copied(r, text, in_order=False)
    check_budget(r, tiny_count(tiny))
    kept = compress(text, method=method, scorer=tiny, question=question, reorder="none", **size)
    check_copied(kept, text, in_order=True)
