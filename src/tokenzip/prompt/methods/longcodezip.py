"""LongCodeZip (Shi et al., 2025, "LongCodeZip: Compress Long Context for Code Language Models",
ASE, arXiv 2510.00446).

1. Coarse: the code is cut into chunks (top-level functions, classes and statements in mode
   ``code``; paragraphs otherwise) and each is ranked by its approximated mutual information with
   the query, ``AMI(c, q) = PPL(q) - PPL(q | c)``: how much reading the chunk makes the query more
   predictable. Chunks are kept best first up to ``coarse_factor`` times the budget.
2. Fine: inside each kept chunk, units (statements in mode ``code``, words otherwise) are scored by
   their self-information given the query; a new block starts at every perplexity spike (a unit
   more than ``spike_std`` standard deviations above its chunk's mean). Each chunk gets a share of
   the budget that grows with its rank, and a 0/1 knapsack picks the blocks of greatest total
   information that fit that share.

The query is the ``question``; without one, the last ``query_tokens`` tokens of the text stand in
for it (the code right before a completion point). The budget fitter then meets the target
tokenizer's budget exactly; statements keep the code parseable (see :mod:`tokenzip.prompt.code`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenzip.method import register
from tokenzip.ops.information import mutual_information_gain
from tokenzip.ops.selection import knapsack, linear_rank_offsets
from tokenzip.prompt.base import PromptJob, PromptMethod, documents


@register
@dataclass
class LongCodeZip(PromptMethod):
    """Code: function chunks ranked by conditional perplexity, then blocks chosen by knapsack."""

    name = "longcodezip"
    paper = "Shi et al., 2025, arXiv 2510.00446"
    question_aware = True

    bounds = {"coarse_factor": (0.0, None), "spike_std": (0.0, None), "dynamic_ratio": (0.0, 1.0),
              "query_tokens": (1, None)}

    coarse_factor: float = 1.5
    spike_std: float = 1.0
    dynamic_ratio: float = 0.3
    query_tokens: int = 64

    def priority(self, job: PromptJob) -> np.ndarray:
        scorer, pieces = job.scorer, job.pieces
        chunks = self._chunks(job)
        if job.question:
            query = scorer.ids(" " + job.question.strip())
        else:
            query = scorer.ids(job.text)[-self.query_tokens :]
            job.notes.append(f"longcodezip: no question given; the last {len(query)} tokens of the text are the query")
        room = scorer.window - len(query) - 2
        texts = [pieces.text[pieces.start[c[0]] : pieces.end[c[-1]]] for c in chunks]
        encoded = [scorer.encode(t) for t in texts]
        losses = scorer.surprisal([((), query)] + [(ids[-room:], query) for ids, _ in encoded])
        alone = losses[0].mean()
        ami = mutual_information_gain(alone.expand(len(chunks)), torch.stack([x.mean() for x in losses[1:]]))
        order = torch.argsort(ami, descending=True, stable=True).numpy()
        sizes = np.array([len(ids) for ids, _ in encoded])
        kept, total = [], 0
        for c in order:
            if kept and total >= self.coarse_factor * job.budget:
                break
            kept.append(int(c))
            total += sizes[c]
        priority = np.full(pieces.n_units, -10.0)
        for c in set(range(len(chunks))) - set(kept):
            units = self._units(pieces, chunks[c])
            priority[units] = -10.0 + float(torch.tanh(ami[c]))
        # Fine stage: the kept chunks, scored after the query, one batched pass.
        info = scorer.surprisal([(query, encoded[c][0][: scorer.window - len(query) - 2]) for c in kept])
        base_keep = min(1.0, job.budget / max(total, 1))
        offsets = linear_rank_offsets(len(kept), self.dynamic_ratio)
        for rank, c in enumerate(kept):
            ids, spans = encoded[c]
            spans = spans[: len(info[rank])] + pieces.start[chunks[c][0]]
            units = self._units(pieces, chunks[c])
            if len(units) == 0:
                continue
            values = job.piece_scores(spans, info[rank], "sum")
            unit_info = torch.from_numpy(job.unit_scores(values, "sum"))[units]
            counts = torch.from_numpy(job.unit_scores(job.piece_scores(spans, torch.ones(len(spans)), "sum"), "sum"))
            cost = counts[units].clamp(min=1)
            density = unit_info / cost
            blocks = self._blocks(density)
            block_value = torch.stack([unit_info[b].sum() for b in blocks])
            block_cost = torch.stack([cost[b].sum() for b in blocks])
            share = float(np.clip(base_keep + float(offsets[rank]), 0.05, 1.0))
            chosen = knapsack(block_value, block_cost, int(share * float(cost.sum())))
            rank_bonus = 1.0 - rank / max(len(kept), 1)
            for b, take in zip(blocks, chosen):
                priority[units[b]] = (2.0 if take else 0.0) + rank_bonus + torch.sigmoid(density[b]).numpy()
            if getattr(pieces, "parent", None) is not None:
                priority[units[0]] = 3.0 + rank_bonus  # the chunk's header (parent of the rest) before its blocks
        return priority

    def _chunks(self, job: PromptJob) -> list[np.ndarray]:
        pieces = job.pieces
        parent = getattr(pieces, "parent", None)
        if parent is None:
            return documents(pieces)
        root = np.arange(len(parent))
        for u in range(len(parent)):
            if parent[u] >= 0:
                root[u] = root[parent[u]]
        piece_root = np.where(pieces.unit >= 0, root[np.clip(pieces.unit, 0, None)], -1)
        chunks, current, current_root = [], [], None
        for i in range(len(pieces)):
            r = piece_root[i]
            if r >= 0 and r != current_root and current:
                chunks.append(np.array(current))
                current = []
            if r >= 0:
                current_root = r
            current.append(i)
        if current:
            chunks.append(np.array(current))
        return chunks

    @staticmethod
    def _units(pieces, chunk: np.ndarray) -> np.ndarray:
        units = pieces.unit[chunk]
        units = units[units >= 0]
        _, first = np.unique(units, return_index=True)
        return units[np.sort(first)]

    def _blocks(self, density: torch.Tensor) -> list[np.ndarray]:
        """Consecutive units, a new block at every perplexity spike."""
        threshold = density.mean() + self.spike_std * (density.std() if len(density) > 1 else 0.0)
        starts = [0] + [i for i in range(1, len(density)) if density[i] > threshold]
        bounds = starts + [len(density)]
        return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
