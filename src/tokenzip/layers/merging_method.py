"""What the token-merging methods (ToMe, PiToMe) share: the similarity they match tokens by, and sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenzip.layers.base import LayersMethod, Step

METRICS = ("keys", "hidden")


@dataclass
class MergingMethod(LayersMethod):
    """Merges tokens by similarity: ``metric="keys"`` compares the layer's attention keys averaged over
    heads (ToMe's choice), ``"hidden"`` the layer's output hidden states (better for mean-pooled text
    embeddings). Merged tokens carry their sizes; with ``prop_attn`` later layers add ``log(size)`` to
    the attention logits (proportional attention)."""

    architectures: ClassVar[tuple[str, ...]] = ("encoder", "vision")
    merges: ClassVar[bool] = True
    choices = {"metric": METRICS}

    prop_attn: bool = True
    metric: str = "keys"

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]  # computed from ``metric``, not a class constant
        """The attention keys, or nothing with ``metric="hidden"`` (the layer's output is all it needs)."""
        return frozenset() if self.metric == "hidden" else frozenset({"keys"})

    def similarity_metric(self, step: Step) -> torch.Tensor:
        return step.need("keys") if self.metric == "keys" else step.hidden
