"""Phi-3 (Abdin et al. 2024, arXiv 2404.14219): fused qkv and gate-up projections, Llama's attention otherwise."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("phi3")
def tiny_phi3(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.Phi3Config(**common)
