"""Llama (Touvron et al. 2023, arXiv 2302.13971): the reference layout the other families follow."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("llama")
def tiny_llama(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.LlamaConfig(**common)
