"""Qwen2 (Yang et al. 2024, arXiv 2407.10671): Llama's layout with biases on the q, k, v projections."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("qwen2")
def tiny_qwen2(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.Qwen2Config(**common)
