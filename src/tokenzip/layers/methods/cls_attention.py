"""Pruning by [CLS] attention: EViT (Liang et al., 2022, arXiv 2202.07800) inside a ViT or text encoder,
VTC-CLS (Wang et al., 2024, arXiv 2412.05819) / FasterVLM for a VLM's vision tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.errors import TokenzipError
from tokenzip.layers.base import LayersMethod, Step
from tokenzip.method import register
from tokenzip.ops.topk import keep_top_scores


@register
@dataclass
class ClsAttention(LayersMethod):
    """Keep the tokens the [CLS] token attends to most (attention averaged over heads).

    Only the [CLS] row of the attention matrix is computed, from the layer's own queries and keys;
    the layer keeps its fused SDPA kernel. In a LLaVA model it prunes the image tokens by the vision
    tower's [CLS] attention before they reach the language model.
    """

    name = "cls_attention"
    paper = ("Liang et al., 2022, EViT: Not All Patches are What You Need, arXiv 2202.07800; "
             "Wang et al., 2024, [CLS] Token Tells Everything Needed (VTC-CLS), arXiv 2412.05819")
    architectures = ("encoder", "vision", "vlm")
    needs = frozenset({"cls_attention"})

    def reduces_input(self, architecture: str) -> bool:
        return architecture == "vlm"  # a VLM's image tokens are pruned before the language model

    def default_layers(self, architecture: str, num_layers: int) -> tuple[int, ...]:
        return () if architecture == "vlm" else super().default_layers(architecture, num_layers)

    def reduction_layers(self, architecture: str, num_layers: int) -> list[int]:
        if architecture == "vlm" and (self.layers is not None or self.removed is not None):
            raise TokenzipError(
                "cls_attention on a VLM prunes image tokens once, before the language model (the language "
                "model has no [CLS]); layers=/removed= do not apply: use ratio= or budget="
            )
        return super().reduction_layers(architecture, num_layers)

    def reduce(self, step: Step) -> torch.Tensor:
        return step.prune(keep_top_scores(step.need("cls_attention"), step.candidates, step.remove))
