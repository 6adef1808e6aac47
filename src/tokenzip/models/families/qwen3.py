"""Qwen3 (Yang et al. 2025, arXiv 2505.09388): per-head RMS norms on queries and keys before the rotary."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("qwen3")
def tiny_qwen3(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.Qwen3Config(**common, head_dim=16)
