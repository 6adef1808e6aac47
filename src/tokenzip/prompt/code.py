"""Python source as deletable statements that always leave parseable code.

Each physical line is a ``LINE`` piece. A simple statement is a unit. A compound statement
(``def``, ``class``, ``if``, ``for``, ``try``, ``with``, ``match``...) is one unit made of its header
lines (decorators, ``else:``/``except:`` lines, closing brackets) **and the first statement of each
of its bodies**, so a kept header never has an empty body; the other statements of its bodies are
units whose parent is the compound. Comment lines are units too. Scores are made monotone along
parents (a child never outranks its parent), so any top-k selection is a valid program: dropping a
compound drops everything inside it.
"""

from __future__ import annotations

import ast

import numpy as np
import regex

from tokenzip.errors import TokenzipError
from tokenzip.prompt.segment import FIXED, LINE, SEP, URL, Pieces, protected_mask

_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def check_python(text: str) -> ast.Module:
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        raise TokenzipError(
            f"mode='code' needs Python source that parses, but line {exc.lineno} does not ({exc.msg}). "
            "Use mode='text' for other languages or broken code."
        ) from exc


def _bodies(node: ast.AST) -> list[list[ast.AST]]:
    out = []
    for name in _BODIES:
        body = getattr(node, name, None)
        if isinstance(body, list) and body and isinstance(body[0], (ast.stmt, ast.excepthandler, ast.match_case)):
            out.append(body)
    return out


def _first_line(node: ast.AST) -> int:
    decorators = getattr(node, "decorator_list", None) or []
    lines = [node.lineno] + [d.lineno for d in decorators]
    return min(lines)


def build_code_pieces(text: str, keep: list[regex.Pattern], protect: bool) -> Pieces:
    """Pieces (one per non-blank line) and statement units for Python ``text``.

    ``pieces.parent`` (extra attribute) holds each unit's parent unit (``-1`` at module level).
    Lines matching a ``keep`` pattern (or, with ``protect``, a URL) fix their unit and its ancestors.
    """
    tree = check_python(text)
    lines = text.splitlines(keepends=True)
    n_lines = len(lines)
    line_unit = np.full(n_lines + 2, -2, dtype=np.int64)  # 1-based; -2 = not covered by a statement
    parents: list[int] = []

    def new_unit(parent: int) -> int:
        parents.append(parent)
        return len(parents) - 1

    def visit(node: ast.AST, unit: int) -> None:
        """Give ``node``'s lines to ``unit``, then its bodies' statements to their own units."""
        first, last = _first_line(node), getattr(node, "end_lineno", node.lineno) or node.lineno
        line_unit[first : last + 1] = unit
        for body in _bodies(node):
            previous_last, previous_unit = -1, unit
            for k, child in enumerate(body):
                same_line = _first_line(child) <= previous_last  # `a = 1; b = 2`: one unit
                child_unit = unit if k == 0 else previous_unit if same_line else new_unit(unit)
                visit(child, child_unit)
                previous_last, previous_unit = getattr(child, "end_lineno", child.lineno), child_unit

    for stmt in tree.body:
        visit(stmt, new_unit(-1))

    # Comment-only lines (not inside a string): a unit each, child of the statement around them.
    in_string = np.zeros(n_lines + 2, dtype=bool)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (node.end_lineno or 0) > node.lineno:
            in_string[node.lineno + 1 : node.end_lineno + 1] = True
    for ln in range(1, n_lines + 1):
        if lines[ln - 1].strip().startswith("#") and not in_string[ln]:
            line_unit[ln] = new_unit(max(-1, int(line_unit[ln])))

    starts, ends, categories, units = [], [], [], []
    offset = 0
    for ln, line in enumerate(lines, start=1):
        body = line.rstrip("\r\n")
        if body.strip():
            starts.append(offset)
            ends.append(offset + len(body))
            categories.append(LINE)
            units.append(int(line_unit[ln]) if line_unit[ln] >= 0 else FIXED)
            if len(body) < len(line):
                starts.append(offset + len(body))
                ends.append(offset + len(line))
                categories.append(SEP)
                units.append(FIXED)
        elif starts and categories[-1] == SEP:
            ends[-1] = offset + len(line)
        else:
            starts.append(offset)
            ends.append(offset + len(line))
            categories.append(SEP)
            units.append(FIXED)
        offset += len(line)
    start = np.array(starts, dtype=np.int64)
    end = np.array(ends, dtype=np.int64)
    pieces = Pieces(text, start, end, end.copy(), np.array(categories, dtype=np.int64), np.array(units, dtype=np.int64))
    pieces.parent = np.array(parents, dtype=np.int64)  # type: ignore[attr-defined]
    patterns = list(keep)
    if protect:
        patterns.append(regex.compile(URL))
    _fix_protected(pieces, patterns)
    return pieces


def _fix_protected(pieces: Pieces, patterns: list[regex.Pattern]) -> None:
    """Fix the units of lines matching a pattern, and every ancestor of those units."""
    if not patterns:
        return
    hit = protected_mask(pieces, patterns) & (pieces.unit >= 0)
    parent = pieces.parent  # type: ignore[attr-defined]
    fixed_units: set[int] = set()
    for u in np.unique(pieces.unit[hit]):
        u = int(u)
        while u >= 0 and u not in fixed_units:
            fixed_units.add(u)
            u = int(parent[u])
    if fixed_units:
        mask = np.isin(pieces.unit, list(fixed_units))
        pieces.unit = np.where(mask, FIXED, pieces.unit)


def monotone_scores(scores: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Clamp every unit's score to at most its parent's (parents are created before children)."""
    out = scores.astype(np.float64).copy()
    for u in range(len(out)):
        p = parent[u]
        if p >= 0 and out[u] > out[p]:
            out[u] = out[p]
    return out
