"""The prompt-method protocol: a method gives every unit of the text a priority; the budget fitter
(:mod:`tokenzip.prompt.budget`) keeps the best units that fit the target-token budget.

A method may regroup the pieces into coarser units first (:meth:`PromptMethod.prepare`, e.g. whole
sentences) and may reorder blocks of the text (:meth:`PromptMethod.order`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from tokenzip.method import Method
from tokenzip.ops.spans import group_reduce, spans_reduce
from tokenzip.prompt.scorer import get_scorer
from tokenzip.prompt.segment import FIXED, SEP, WORD, Pieces, sentence_ids


@dataclass
class PromptJob:
    """One compression: the text cut into pieces, the budget, and a lazily loaded scorer."""

    text: str
    pieces: Pieces
    budget: int  # target tokens kept
    tokens_before: int
    count: Callable[[str], int]
    question: str | None = None
    mode: str = "text"
    scorer_spec: Any = "gemma-3-270m"
    notes: list[str] = field(default_factory=list)
    # what the method computed for this call, from prepare() to order(): kept here, never on the method
    # object, so one method object can compress several texts at once
    state: dict[str, Any] = field(default_factory=dict)
    _scorer: Any = None

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            self._scorer = get_scorer(self.scorer_spec)
        return self._scorer

    @property
    def keep_fraction(self) -> float:
        return self.budget / max(self.tokens_before, 1)

    def piece_spans(self, pieces: np.ndarray | None = None) -> torch.Tensor:
        idx = np.arange(len(self.pieces)) if pieces is None else pieces
        return torch.from_numpy(np.stack([self.pieces.start[idx], self.pieces.end[idx]], axis=1))

    def piece_scores(self, spans: np.ndarray, info: torch.Tensor, how: str = "mean") -> torch.Tensor:
        """Token self-information (with its character spans) reduced over every piece ``(P,)``;
        NaN for pieces no token overlaps."""
        out = torch.full((len(self.pieces),), float("nan"))
        if len(spans) == 0:
            return out
        idx = self.pieces_between(int(spans[:, 0].min()), int(spans[:, 1].max()))
        out[idx] = spans_reduce(info, torch.from_numpy(spans), self.piece_spans(idx), how, empty=float("nan"))
        return out

    def pieces_between(self, start: int, end: int) -> np.ndarray:
        """Indices of the pieces overlapping characters ``[start, end)``."""
        lo = int(np.searchsorted(self.pieces.end, start, side="right"))
        hi = int(np.searchsorted(self.pieces.start, end, side="left"))
        return np.arange(lo, max(lo, hi))

    def unit_scores(self, piece_values: torch.Tensor, how: str = "mean") -> np.ndarray:
        """Piece values reduced over each unit (NaN pieces ignored) ``(U,)``."""
        groups = torch.from_numpy(self.pieces.unit.copy())
        groups[torch.isnan(piece_values)] = -1
        return group_reduce(torch.nan_to_num(piece_values), groups, self.pieces.n_units, how).numpy()

    def information(self, how: str = "mean", context: str = "") -> np.ndarray:
        """Self-information of every unit under the scorer: one pass over the text, in windows."""
        spans, info = self.scorer.text_information(self.text, context)
        return self.unit_scores(self.piece_scores(spans, info, how), how)


@dataclass
class PromptMethod(Method):
    """Base of the prompt methods."""

    stage: ClassVar[str] = "prompt"
    uses_scorer: ClassVar[bool] = True
    question_aware: ClassVar[bool] = False
    unit: ClassVar[str] = "word"  # what a unit is, in notes (``prepare`` may regroup words into sentences)

    def prepare(self, job: PromptJob) -> None:
        """Regroup ``job.pieces.unit`` when the method works on coarser units (default: words)."""

    def priority(self, job: PromptJob) -> np.ndarray:
        """One number per unit; higher is kept first."""
        raise NotImplementedError

    def order(self, job: PromptJob) -> list[np.ndarray] | None:
        """Blocks of piece indices in output order, or None for the original order."""
        return None


def group_sentences(pieces: Pieces) -> np.ndarray:
    """Make every sentence one unit (its protected words stay fixed); returns piece -> sentence id."""
    sid = sentence_ids(pieces)
    removable = pieces.unit >= 0
    _, dense = np.unique(sid[removable], return_inverse=True)
    unit = np.full(len(pieces), FIXED, dtype=np.int64)
    unit[removable] = dense
    pieces.unit = unit
    return sid


def documents(pieces: Pieces, min_documents: int = 3, levels: tuple[str, ...] = ("paragraph", "line", "sentence"),
              ) -> list[np.ndarray]:
    """Blocks of consecutive piece indices: paragraphs (blank-line separated), else lines, else
    sentences (the first of ``levels`` that gives at least ``min_documents`` blocks; the last level
    tried is returned whatever its count). Separators between blocks belong to neither."""
    text = pieces.text
    seps = np.flatnonzero(pieces.category == SEP)
    newlines = np.array([text.count("\n", pieces.start[i], pieces.end[i]) for i in seps], dtype=np.int64)
    blocks = [np.arange(len(pieces))]
    for level in levels:
        if level == "sentence":
            break
        cuts = seps[newlines >= (2 if level == "paragraph" else 1)]
        blocks = _split(len(pieces), cuts)
        if len(blocks) >= min_documents:
            return blocks
    if "sentence" not in levels:
        return blocks
    sid = sentence_ids(pieces)
    words = np.flatnonzero(pieces.category == WORD)
    if len(words) == 0:
        return [np.arange(len(pieces))]
    cuts = [i for a, i in zip(words[:-1], words[1:]) if sid[a] != sid[i]]
    return _split(len(pieces), np.array(cuts, dtype=np.int64), cut_is_separator=False)


def move_to_end(blocks: list[np.ndarray], top: int) -> list[np.ndarray] | None:
    """An output order (see :meth:`PromptMethod.order`): the other blocks in the text's order, then
    ``blocks[top]``, the place nearest a question that follows the text; None when there is only one."""
    rest = [b for i, b in enumerate(blocks) if i != top]
    return [np.concatenate(rest), blocks[top]] if rest else None


def _split(n: int, cuts: np.ndarray, cut_is_separator: bool = True) -> list[np.ndarray]:
    blocks, start = [], 0
    for c in cuts:
        if c > start:
            blocks.append(np.arange(start, c))
        start = c + 1 if cut_is_separator else c
    if start < n:
        blocks.append(np.arange(start, n))
    return [b for b in blocks if len(b)]


def block_tokens(pieces: Pieces, blocks: list[np.ndarray], spans: np.ndarray) -> list[np.ndarray]:
    """Indices of the tokens (character ``spans`` ``(T, 2)``) that start inside each block."""
    starts = spans[:, 0]
    out = []
    for block in blocks:
        lo = np.searchsorted(starts, pieces.start[block[0]], side="left")
        hi = np.searchsorted(starts, pieces.end[block[-1]], side="left")
        out.append(np.arange(lo, hi))
    return out


def block_text(pieces: Pieces, block: np.ndarray) -> str:
    return pieces.text[pieces.start[block[0]] : pieces.end[block[-1]]]
