"""LongLLMLingua (Jiang et al., 2024, "LongLLMLingua: Accelerating and Enhancing LLMs in Long Context
Scenarios via Prompt Compression", ACL, arXiv 2310.06839).

1. Coarse, question-aware document ranking: each document ``d`` is scored by the perplexity of the
   question followed by "We can get the answer to this question in the given documents." given
   ``d``; lower is more relevant. Documents are kept best first up to ``coarse_factor`` times the
   budget; the rest are dropped before any word of a kept one.
2. Dynamic compression ratio: better-ranked documents keep a larger share of their words (a linear
   offset of +/- ``dynamic_ratio`` on the within-document rank of each word's score).
3. Fine, contrastive scores: ``I(x_i | x_<i) - I(x_i | question, x_<i)``, how much more
   predictable the question makes each token; words are ranked by the mean over their tokens.
4. Optional reordering against "lost in the middle" (Liu et al., 2023, arXiv 2307.03172):
   ``reorder="sort"`` outputs the kept documents best first (the paper's reordering);
   ``reorder="best-last"`` keeps the original order but moves the best document to the end, right
   before the question that follows the context (the default: on 12 generated ``qa`` samples at 2x,
   Gemma 3 270M as scorer and reader, it answered 10/12 with 48-token documents; with 96-token
   documents 7/12, where ``sort`` answered 8/12 and the original order 5/12; see
   benchmarks/prompt-gemma-3-270m.md); ``"none"`` keeps the original order.
   Only in ``text`` mode.

Documents are the text's paragraphs (or lines); a text with neither is cut into runs of whole
sentences of about ``document_tokens`` tokens (48 by default, two or three sentences: finer
documents let the coarse ranking drop more of what surrounds the relevant sentence).

One batched forward pass scores every document followed by the question (giving both the
documents' plain self-information and the question's perplexity), a second one scores the kept
documents after the question.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenzip.method import register
from tokenzip.ops.information import contrastive_information
from tokenzip.ops.selection import linear_rank_offsets, percentile_ranks
from tokenzip.prompt.base import PromptJob, PromptMethod, block_text, documents, move_to_end
from tokenzip.prompt.methods.llmlingua import DROPPED, LLMLingua

REORDERS = ("none", "sort", "best-last")
INSTRUCTION = " We can get the answer to this question in the given documents."


@register
@dataclass
class LongLLMLingua(PromptMethod):
    """Question-aware: documents ranked by the question's perplexity, contrastive token scores."""

    name = "longllmlingua"
    paper = "Jiang et al., 2024, arXiv 2310.06839"
    question_aware = True

    bounds = {"coarse_factor": (0.0, None), "dynamic_ratio": (0.0, 1.0), "document_tokens": (1, None)}
    choices = {"reorder": REORDERS}

    coarse_factor: float = 1.5
    dynamic_ratio: float = 0.25
    reorder: str = "best-last"
    document_tokens: int = 48

    def priority(self, job: PromptJob) -> np.ndarray:
        if not job.question:
            return LLMLingua().priority(job)
        scorer = job.scorer
        pieces = job.pieces
        blocks = self._blocks(job)
        question_ids = scorer.ids(job.question.strip() + INSTRUCTION)
        encoded = [scorer.encode(block_text(pieces, b)) for b in blocks]
        # Pass 1: every document followed by the question.
        plain = scorer.surprisal([((), ids + question_ids) for ids, _ in encoded])
        question_loss = np.array([float(p[len(ids):].mean()) for p, (ids, _) in zip(plain, encoded)])
        order = np.argsort(question_loss, kind="stable")  # most relevant first
        job.state["rank"] = order
        sizes = np.array([len(ids) for ids, _ in encoded])
        kept, total = [], 0
        for b in order:
            if kept and total >= self.coarse_factor * job.budget:
                break
            kept.append(b)
            total += sizes[b]
        # Pass 2: the kept documents after the question.
        prefix = scorer.ids(job.question.strip() + "\n")
        conditioned = scorer.surprisal([(prefix, encoded[b][0]) for b in kept])
        offsets = linear_rank_offsets(len(kept), self.dynamic_ratio)
        priority = np.full(pieces.n_units, -DROPPED)
        for rank, (b, cond) in enumerate(zip(kept, conditioned)):
            ids, spans = encoded[b]
            base = pieces.start[blocks[b][0]]
            contrast = contrastive_information(plain[b][: len(ids)], cond)
            values = job.piece_scores(spans + base, contrast, "mean")
            scores = torch.from_numpy(job.unit_scores(values, "mean"))
            units = np.unique(pieces.unit[blocks[b]])
            units = units[units >= 0]
            if len(units):
                priority[units] = (percentile_ranks(scores[units]) + offsets[rank]).numpy()
        dropped = np.ones(len(blocks), dtype=bool)
        dropped[kept] = False
        for b in np.flatnonzero(dropped):
            units = np.unique(pieces.unit[blocks[b]])
            units = units[units >= 0]
            priority[units] = -DROPPED + (-question_loss[b])
        return priority

    def _blocks(self, job: PromptJob) -> list[np.ndarray]:
        """Documents: paragraphs (or lines); a text without them is cut into runs of whole sentences
        of about ``document_tokens`` tokens. Each is split further if longer than the scorer's window."""
        pieces, scorer = job.pieces, job.scorer
        blocks = documents(pieces, levels=("paragraph", "line"))
        if len(blocks) < 3:
            blocks = self._sentence_runs(job, documents(pieces, levels=("sentence",)))
        out = []
        for block in blocks:
            n = len(scorer.ids(block_text(pieces, block)))
            parts = max(1, -(-n // (scorer.window - 64)))
            out += [p for p in np.array_split(block, parts) if len(p)]
        job.state["documents"] = out
        return out

    def _sentence_runs(self, job: PromptJob, sentences: list[np.ndarray]) -> list[np.ndarray]:
        runs, current, size = [], [], 0
        for sentence in sentences:
            n = max(1, (job.pieces.end[sentence[-1]] - job.pieces.start[sentence[0]]) // 4)  # ~4 characters a token
            if current and size + n > self.document_tokens:
                runs.append(np.concatenate(current))
                current, size = [], 0
            current.append(sentence)
            size += n
        if current:
            runs.append(np.concatenate(current))
        return runs

    def order(self, job: PromptJob) -> list[np.ndarray] | None:
        if self.reorder == "none" or not job.question or job.mode != "text" or "rank" not in job.state:
            return None
        if self.reorder == "best-last":
            return move_to_end(job.state["documents"], int(job.state["rank"][0]))
        return [job.state["documents"][b] for b in job.state["rank"]]
