"""Cut a text into pieces that can be deleted safely, and put the kept ones back together.

A text becomes a sequence of **pieces**, each a span of the original text:

- ``WORD``: a word (a run of graphemes between spaces) or, in scripts written without spaces (Chinese,
  Japanese, Thai, ...), a single grapheme cluster. Its trailing spaces and tabs are its *gap*. A run
  longer than ``LONG_RUN`` graphemes (a hash, base64, a line with no spaces) is not a word: it is cut
  into pieces of ``CHUNK`` graphemes, so a budget smaller than the run can still keep part of it.
- ``SEP``: whitespace holding a line break (kept when text on both sides is kept, so lines and
  paragraphs survive without piling up empty lines).
- ``STRUCT``: structure copied verbatim (JSON syntax and keys, Markdown headings and code fences).
- ``LINE``: a physical line of code (mode ``code``), indentation included.

Every piece boundary is a grapheme boundary, so no deletion ever splits a multibyte character, a
combining sequence, an emoji ZWJ sequence or a flag. Pieces are grouped into **units** (a word, a
sentence, a statement); a unit is kept or dropped whole, and unit ``-1`` is always kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import regex

# Patterns a protect=True compression never cuts through: numbers, and URLs / e-mail addresses.
NUMBER = r"\p{Nd}"
URL = r"(?:(?:https?|ftp|file)://|www\.)[^\s<>\"']+|(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+"

WORD, SEP, STRUCT, LINE = 0, 1, 2, 3
FIXED = -1  # unit id of pieces that are always kept

# Scripts written without spaces between words: every grapheme is a unit of its own.
_SPACELESS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
_TOKEN = regex.compile(
    rf"(?P<ws>(?:(?=\s)\X)+)"
    rf"|(?P<solo>(?=[{_SPACELESS}])\X)"
    rf"|(?P<word>(?:(?![\s{_SPACELESS}])\X)+)",
    regex.VERSION1,
)
_SENTENCE_END = regex.compile(r"[.!?。！？…][\"'”’)\]」』]*$")
_GRAPHEME = regex.compile(r"\X")
LONG_RUN = 64  # graphemes: a longer run without spaces is cut into chunks
CHUNK = 16  # graphemes per chunk of an over-long run


@dataclass
class Pieces:
    """The pieces of ``text``: parallel arrays of start/end offsets, gap ends, categories and unit ids."""

    text: str
    start: np.ndarray
    end: np.ndarray
    gap_end: np.ndarray
    category: np.ndarray
    unit: np.ndarray
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def n_units(self) -> int:
        return int(self.unit.max()) + 1 if len(self.unit) and self.unit.max() >= 0 else 0

    def piece_text(self, i: int) -> str:
        return self.text[self.start[i] : self.end[i]]

    def content(self) -> np.ndarray:
        """Mask of the pieces that carry text (everything but separators)."""
        return self.category != SEP


class PieceBuilder:
    """Accumulates pieces region by region (see :func:`build_pieces`)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.rows: list[tuple[int, int, int, int]] = []  # start, end, gap_end, category

    def add(self, start: int, end: int, category: int, gap_end: int | None = None) -> None:
        if end > start:
            self.rows.append((start, end, end if gap_end is None else gap_end, category))

    def add_text(self, start: int, end: int) -> None:
        """Split ``text[start:end]`` into words, single graphemes (spaceless scripts) and separators."""
        for m in _TOKEN.finditer(self.text, start, end):
            s, e = m.span()
            if m.lastgroup == "ws":
                if "\n" in m.group() or "\r" in m.group() or not self.rows or self.rows[-1][2] != s:
                    self.add(s, e, SEP)
                else:  # horizontal space right after a piece: that piece's gap
                    ps, pe, _, pk = self.rows[-1]
                    self.rows[-1] = (ps, pe, e, pk)
            elif e - s > LONG_RUN:
                self.add_long_run(s, e)
            else:
                self.add(s, e, WORD)

    def add_long_run(self, start: int, end: int) -> None:
        """A run without spaces: one word if it has at most ``LONG_RUN`` graphemes, else chunks of
        ``CHUNK`` graphemes (cut at grapheme boundaries, joined back without a space)."""
        bounds = [m.end() for m in _GRAPHEME.finditer(self.text, start, end)]
        if len(bounds) <= LONG_RUN:
            self.add(start, end, WORD)
            return
        cuts = [start, *bounds[CHUNK - 1 :: CHUNK]]
        if cuts[-1] != end:
            cuts.append(end)
        for s, e in zip(cuts[:-1], cuts[1:]):
            self.add(s, e, WORD)

    def build(self) -> Pieces:
        arr = np.array(self.rows, dtype=np.int64).reshape(-1, 4)
        category = arr[:, 3].copy()
        unit = np.full(len(arr), FIXED, dtype=np.int64)
        return Pieces(self.text, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), category, unit)


def word_units(pieces: Pieces, removable: np.ndarray) -> None:
    """One unit per removable WORD piece (in text order); other pieces are fixed."""
    unit = np.full(len(pieces), FIXED, dtype=np.int64)
    idx = np.flatnonzero(removable)
    unit[idx] = np.arange(len(idx))
    pieces.unit = unit


def sentence_ids(pieces: Pieces) -> np.ndarray:
    """Sentence index of every piece: a sentence ends after a word with final punctuation, at a line
    break, or at a structural piece. Separators and structure get ``-1``."""
    ids = np.full(len(pieces), -1, dtype=np.int64)
    current, open_sentence = 0, False
    for i in range(len(pieces)):
        category = pieces.category[i]
        if category != WORD:
            if open_sentence:
                current += 1
                open_sentence = False
            continue
        ids[i] = current
        open_sentence = True
        if _SENTENCE_END.search(pieces.text, pieces.start[i], pieces.end[i]):
            current += 1
            open_sentence = False
    return ids


def assemble(pieces: Pieces, kept_units: np.ndarray, order: list[np.ndarray] | None = None) -> tuple[str, list]:
    """The compressed text and its spans ``(start, end, out_start)``: ``text[start:end]`` was copied to
    the output at ``out_start``.

    ``kept_units`` is a boolean mask over units. Joining rules: adjacent kept pieces keep the exact
    original text between them; across deletions a line break is kept (the widest one deleted), else
    one space (the kept word's own gap, or the deleted neighbour's where it had none); structure is
    joined without adding anything. ``order`` (lists of piece indices) reorders blocks of pieces.
    """
    text = pieces.text
    keep = pieces.unit == FIXED
    if kept_units.size:
        keep |= (pieces.unit >= 0) & kept_units[np.clip(pieces.unit, 0, None)]
    keep &= pieces.category != SEP
    blocks = order if order is not None else [np.arange(len(pieces))]
    out: list[str] = []
    spans: list[list[int]] = []
    length = 0

    block_break = False  # a new block starts: "\n\n" goes before its first emitted text

    def emit(s: int, e: int) -> None:
        nonlocal length, block_break
        s, e = int(s), int(e)
        if e <= s:
            return
        if block_break:
            out.append("\n\n")
            length += 2
            block_break = False
        if spans and spans[-1][1] == s and spans[-1][2] + (spans[-1][1] - spans[-1][0]) == length:
            spans[-1][1] = e
        else:
            spans.append([s, e, length])
        out.append(text[s:e])
        length += e - s

    content = np.flatnonzero(pieces.category != SEP)
    first_content = content[0] if len(content) else len(pieces)
    last_content = content[-1] if len(content) else -1
    for b, block in enumerate(blocks):
        block_break = b > 0 and bool(out)
        prev = -1
        best_sep = -1
        for i in block:
            i = int(i)
            category = pieces.category[i]
            if category == SEP:
                if i < first_content or i > last_content:  # the text's own leading/trailing whitespace
                    if order is None and (i < first_content or prev >= 0):
                        emit(pieces.start[i], pieces.end[i])
                    continue
                if best_sep < 0 or _newlines(text, pieces, i) > _newlines(text, pieces, best_sep):
                    best_sep = i
                continue
            if not keep[i]:
                continue
            if prev >= 0:
                if best_sep >= 0:
                    emit(pieces.start[best_sep], pieces.end[best_sep])
                elif i == prev + 1:
                    emit(pieces.end[prev], pieces.start[i])
                elif pieces.category[prev] == STRUCT:
                    pass
                elif category == STRUCT:
                    emit(pieces.end[i - 1], pieces.gap_end[i - 1])
                elif pieces.gap_end[prev] > pieces.end[prev]:
                    emit(pieces.end[prev], pieces.gap_end[prev])
                else:
                    emit(pieces.end[i - 1], pieces.gap_end[i - 1])
            emit(pieces.start[i], pieces.end[i])
            prev, best_sep = i, -1
    return "".join(out), [tuple(s) for s in spans]


def _newlines(text: str, pieces: Pieces, i: int) -> int:
    seg = text[pieces.start[i] : pieces.end[i]]
    return seg.count("\n") + seg.count("\r") - seg.count("\r\n")


def protected_mask(pieces: Pieces, patterns: list[regex.Pattern]) -> np.ndarray:
    """Pieces overlapping any match of ``patterns``."""
    text = pieces.text
    hit = np.zeros(len(text) + 1, dtype=np.int64)
    for pattern in patterns:
        for m in pattern.finditer(text):
            s, e = m.span()
            if e > s:
                hit[s] += 1
                hit[e] -= 1
    covered = np.concatenate([[0], np.cumsum(hit[:-1]) > 0]).astype(np.int64).cumsum()
    return covered[pieces.end] - covered[pieces.start] > 0
