"""Modes: which parts of a text may lose words, and which are structure to copy verbatim.

- ``text``: everything is prose.
- ``json``: only the words inside string *values* can go; syntax, keys, numbers, booleans and null
  stay, so the output parses and has the same keys (LLMLingua needs a hand-written per-key config
  for this, PR #120).
- ``markdown``: headings, code fences (with their code), table rows, list markers and inline code
  stay; the prose around them is compressed.
- ``code``: Python, compressed by whole statements so it always parses (see :mod:`tokenzip.prompt.code`).

Protected spans (numbers, URLs, e-mail addresses and the caller's ``keep`` patterns) are marked
fixed after segmentation: any word that overlaps one is never removed.
"""

from __future__ import annotations

import json

import numpy as np
import regex

from tokenzip.errors import TokenzipError
from tokenzip.prompt.code import build_code_pieces
from tokenzip.prompt.segment import NUMBER, STRUCT, URL, WORD, PieceBuilder, Pieces, protected_mask, word_units

MODES = ("text", "json", "markdown", "code")

# E-mail addresses match from the start of a run only, possessively: linear time on long unspaced runs.
_MARKDOWN_KEEP = r"(?m)^[ \t]*(?:[-*+]|\d{1,9}[.)])(?=[ \t])|`[^`\n]+`"

_JSON_STRING = regex.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')
_FENCE = regex.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = regex.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_SETEXT = regex.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_TABLE = regex.compile(r"^[ \t]*\|")


def compile_patterns(keep: list[str] | tuple[str, ...] | str | None) -> list[regex.Pattern]:
    """Compile the caller's ``keep`` regular expressions, with a clear error for a bad one."""
    if keep is None:
        return []
    if isinstance(keep, str):
        keep = [keep]
    patterns = []
    for p in keep:
        if isinstance(p, regex.Pattern):
            patterns.append(p)
            continue
        if not isinstance(p, str) or not p:
            raise TokenzipError(f"keep patterns must be non-empty regular expressions (strings), got {p!r}")
        try:
            patterns.append(regex.compile(p))
        except regex.error as exc:
            raise TokenzipError(f"keep pattern {p!r} is not a valid regular expression: {exc}") from exc
    return patterns


def check_json(text: str) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenzipError(
            f"mode='json' needs valid JSON, but the text is not ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            "Fix the JSON, or use mode='text'."
        ) from exc


def _json_regions(builder: PieceBuilder, text: str) -> None:
    """String values are prose; everything else (keys included) is structure."""
    pos = 0
    for m in _JSON_STRING.finditer(text):
        s, e = m.span()
        after = text[e : e + 64].lstrip()
        if after.startswith(":"):
            continue  # a key: part of the structure
        builder.add(pos, s + 1, STRUCT)
        builder.add_text(s + 1, e - 1)
        pos = e - 1
    builder.add(pos, len(text), STRUCT)


def _markdown_regions(builder: PieceBuilder, text: str) -> None:
    """Headings, fenced code blocks and table rows are structure; other lines are prose."""
    lines = text.splitlines(keepends=True)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lines])]).astype(int)
    prose_from = 0
    i = 0

    def structure(first: int, last: int) -> None:
        """Lines first..last (inclusive) are structure; their final line break stays prose."""
        nonlocal prose_from
        s = offsets[first]
        e = offsets[last] + len(lines[last].rstrip("\r\n"))
        builder.add_text(prose_from, s)
        builder.add(s, e, STRUCT)
        prose_from = e

    while i < len(lines):
        line = lines[i].rstrip("\r\n")
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            j = i + 1
            while j < len(lines) and not regex.match(rf"^ {{0,3}}{regex.escape(marker[0])}{{{len(marker)},}}[ \t]*$",
                                                     lines[j].rstrip("\r\n")):
                j += 1
            structure(i, min(j, len(lines) - 1))
            i = j + 1
            continue
        if _HEADING.match(line) or _TABLE.match(line):
            structure(i, i)
        elif _SETEXT.match(line) and i > 0 and lines[i - 1].strip() and not _TABLE.match(lines[i - 1]):
            structure(i - 1, i)
        i += 1
    builder.add_text(prose_from, len(text))


def build_pieces(
    text: str,
    mode: str,
    keep: list[regex.Pattern],
    protect: bool = True,
) -> Pieces:
    """Segment ``text`` for ``mode`` and mark protected words fixed; one unit per removable word.

    ``protect`` guards numbers, URLs and e-mail addresses (the caller's ``keep`` patterns are always
    guarded).
    """
    if mode == "code":
        return build_code_pieces(text, keep, protect)
    builder = PieceBuilder(text)
    if mode == "json":
        _json_regions(builder, text)
    elif mode == "markdown":
        _markdown_regions(builder, text)
    else:
        builder.add_text(0, len(text))
    pieces = builder.build()
    patterns = list(keep)
    if protect:
        patterns += [regex.compile(NUMBER), regex.compile(URL)]
    if mode == "markdown":
        patterns.append(regex.compile(_MARKDOWN_KEEP))
    guarded = protected_mask(pieces, patterns)
    word_units(pieces, (pieces.category == WORD) & ~guarded)
    return pieces
