"""Mistral (Jiang et al. 2023, arXiv 2310.06825): Llama's layout; the tiny model leaves its sliding window off."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("mistral")
def tiny_mistral(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.MistralConfig(**common, sliding_window=None)
