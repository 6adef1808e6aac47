"""OLMo 2 (Team OLMo 2024, "2 OLMo 2 Furious", arXiv 2501.00656): Llama's attention with RMS norms over the whole
query and key projections (before the split into heads and the rotary), and norms after the attention and the MLP
instead of before. tokenzip sees the keys after the rotary, as cached, so nothing else differs."""

from __future__ import annotations

from typing import Any

from tokenzip.models.families import register_family


@register_family("olmo2")
def tiny_olmo2(common: dict[str, Any]) -> Any:
    import transformers as tf

    return tf.Olmo2Config(**common)
