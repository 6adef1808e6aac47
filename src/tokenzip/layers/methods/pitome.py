"""PiToMe: energy-guided token merging (Tran et al., 2024, "Accelerating Transformers with
Spectrum-Preserving Token Merging", arXiv 2405.16148)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.layers.base import Step
from tokenzip.layers.merging_method import MergingMethod
from tokenzip.method import register
from tokenzip.ops.geometry import energy_scores
from tokenzip.ops.merging import soft_matching


@register
@dataclass
class PiToMe(MergingMethod):
    """Merge only tokens in crowded neighbourhoods; isolated, informative tokens are protected.

    Each candidate's energy is the mean ELU of its key similarity to every token minus a margin
    (``margin``; by default ``0.9 - 0.9 * layer / num_layers``, lower in deeper layers as in the
    paper). The ``2r`` highest-energy candidates are mergeable: sorted by energy they alternate into
    sets A and B, and every A token merges into its most similar B token (size-weighted, with
    proportional attention). The remaining candidates stay untouched at this layer. ``metric``:
    similarity of keys (default) or of the layer's output hidden states.
    """

    name = "pitome"
    paper = "Tran et al., 2024, Accelerating Transformers with Spectrum-Preserving Token Merging, arXiv 2405.16148"

    bounds = {"alpha": (0.0, None)}

    margin: float | None = None
    alpha: float = 1.0

    def reduce(self, step: Step) -> torch.Tensor:
        keys = self.similarity_metric(step)
        margin = self.margin if self.margin is not None else 0.9 - 0.9 * step.layer / step.num_layers
        energy = energy_scores(keys, step.valid, margin, self.alpha).masked_fill(~step.candidates, float("-inf"))
        order = energy.argsort(dim=-1, descending=True, stable=True)  # mergeable = the first 2r
        r = int(step.remove.max())
        rank = torch.arange(r, device=keys.device)[None, :]
        src, dst = order[:, 0 : 2 * r : 2], order[:, 1 : 2 * r : 2]
        usable = rank < step.remove[:, None]
        return soft_matching(keys, src, usable & step.candidates.gather(1, src),
                             dst, usable & step.candidates.gather(1, dst), step.remove)
