"""LLMLingua (Jiang et al., 2023, "LLMLingua: Compressing Prompts for Accelerated Inference of Large
Language Models", EMNLP, arXiv 2310.05736).

1. Iterative token-level compression: the text is scored in segments of ``iterative_size`` tokens;
   each segment is conditioned on the *compressed* text kept so far (its last ``context_tokens``
   tokens), so a token's self-information reflects what the target model will actually have read.
   Inside a segment the most informative words are provisionally kept at the target rate to build
   that compressed prefix.
2. Budget controller (coarse level): when the text has several paragraphs (LLMLingua's
   demonstrations), the highest-perplexity paragraphs are kept first until ``coarse_factor`` times
   the budget; the other paragraphs are dropped before any word of a kept one.
3. Words are ranked by the mean self-information of their tokens; the budget fitter keeps the best
   ones that fit the target tokenizer's budget exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenzip.method import register
from tokenzip.ops.selection import top_fraction
from tokenzip.ops.spans import spans_reduce
from tokenzip.prompt.base import PromptJob, PromptMethod, block_tokens, documents
from tokenzip.prompt.segment import SEP

DROPPED = 1e6  # priority penalty of words in paragraphs the coarse stage drops


@register
@dataclass
class LLMLingua(PromptMethod):
    """Self-information under a small LM, scored segment by segment on the compressed prefix."""

    name = "llmlingua"
    paper = "Jiang et al., 2023, arXiv 2310.05736"

    bounds = {"iterative_size": (1, None), "context_tokens": (0, None), "coarse_factor": (0.0, None)}

    iterative_size: int = 1024
    context_tokens: int = 128
    coarse_factor: float = 2.0

    def priority(self, job: PromptJob) -> np.ndarray:
        spans, info = self.iterative_information(job)
        scores = job.unit_scores(job.piece_scores(spans, info, "mean"), "mean")
        return scores - self.coarse_penalty(job, spans, info)

    def iterative_information(self, job: PromptJob) -> tuple[np.ndarray, torch.Tensor]:
        scorer = job.scorer
        ids, spans = scorer.encode(job.text)
        pieces = job.pieces
        size = max(1, min(self.iterative_size, scorer.window))
        prefix: list[int] = []
        infos = []
        for s in range(0, len(ids), size):
            segment = ids[s : s + size]
            info = scorer.surprisal([(prefix[-self.context_tokens :], segment)])[0]
            infos.append(info)
            if s + size < len(ids):
                kept = self._provisional(job, spans[s : s + size], info)
                prefix += scorer.ids(" " + " ".join(pieces.piece_text(i) for i in kept))
        return spans, torch.cat(infos) if infos else torch.zeros(0)

    def _provisional(self, job: PromptJob, seg_spans: np.ndarray, info: torch.Tensor) -> np.ndarray:
        """Pieces of one segment kept at the target rate (fixed pieces always)."""
        pieces = job.pieces
        idx = job.pieces_between(int(seg_spans[:, 0].min()), int(seg_spans[:, 1].max()))
        idx = idx[pieces.category[idx] != SEP]
        spans, piece_spans = torch.from_numpy(seg_spans), job.piece_spans(idx)
        values = spans_reduce(info, spans, piece_spans, "mean", empty=float("-inf"))
        costs = spans_reduce(torch.ones(len(info)), spans, piece_spans, "sum")
        keep = top_fraction(values, costs, job.keep_fraction) | torch.from_numpy(pieces.unit[idx] < 0)
        return idx[keep.numpy()]

    def coarse_penalty(self, job: PromptJob, spans: np.ndarray, info: torch.Tensor) -> np.ndarray:
        """Budget controller: ``DROPPED`` for the units of the paragraphs it leaves out, else 0."""
        pieces = job.pieces
        penalty = np.zeros(pieces.n_units)
        blocks = documents(pieces, min_documents=2, levels=("paragraph",))
        if self.coarse_factor <= 0 or len(blocks) < 2:
            return penalty
        tokens = block_tokens(pieces, blocks, spans)
        ppl = np.array([float(info[t].mean()) if len(t) else 0.0 for t in tokens])
        sizes = np.array([len(t) for t in tokens])
        kept = np.zeros(len(blocks), dtype=bool)
        total = 0
        for b in np.argsort(-ppl, kind="stable"):
            if total >= self.coarse_factor * job.budget:
                break
            kept[b] = True
            total += sizes[b]
        for b in np.flatnonzero(~kept):
            units = pieces.unit[blocks[b]]
            penalty[units[units >= 0]] = DROPPED
        return penalty
