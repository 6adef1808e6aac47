"""Gemma 3 (Gemma Team 2025, arXiv 2503.19786): sliding-window layers interleaved with global ones, each type
with its own rotary base (the rotary embedding takes the layer type), q/k norms, and a text model type of its own
(``gemma3_text``) beside the multimodal one. The tiny model alternates a 16-token window with global layers."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("gemma3", model_types=("gemma3", "gemma3_text"), rotary_per_layer_type=True)
def tiny_gemma3(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.Gemma3TextConfig(
        **common, head_dim=16, sliding_window=16, query_pre_attn_scalar=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
    )
