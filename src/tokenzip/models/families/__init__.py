"""Decoder families: one file per Hugging Face model type, holding all tokenzip knows about it.

A family file registers itself with :func:`register_family`, decorating the function that builds its tiny
random config for the tests (the way timm keeps an architecture's ``@register_model`` configs in its file):

    @register_family("olmo2")
    def tiny_olmo2(common: dict) -> Any:
        import transformers as tf
        return tf.Olmo2Config(**common)

``common`` holds the shared tiny geometry (4 layers, 4 query heads, 2 kv heads, hidden size 64, the test
vocabulary). A family whose layout differs from Llama's says so in the registration: ``model_types`` (the
``config.model_type`` values it covers, default its name) and ``rotary_per_layer_type`` (its rotary embedding
takes the layer type, as Gemma 3's local and global rotary bases do). Every module in this package is imported
on first use, so **a new family is one new file** here (and the family-parametrized tests pick it up through
``tokenzip.testing.DECODER_FAMILIES``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenzip.registry import Registry

TinyConfig = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class DecoderFamily:
    """What tokenzip needs to know about one decoder family."""

    name: str
    model_types: tuple[str, ...]
    tiny_config: TinyConfig
    rotary_per_layer_type: bool = False

    def rotary(self, rotary_emb: Any, like: Any, positions: Any, layer_type: str) -> tuple[Any, Any]:
        """``(cos, sin)`` from the decoder's rotary embedding module at ``positions``."""
        if self.rotary_per_layer_type:
            return rotary_emb(like, positions, layer_type)
        return rotary_emb(like, positions)


FAMILIES: Registry[DecoderFamily] = Registry("decoder family", DecoderFamily, (__name__,))


def register_family(name: str, model_types: tuple[str, ...] | None = None,
                    rotary_per_layer_type: bool = False) -> Callable[[TinyConfig], TinyConfig]:
    """Register the decorated tiny-config builder as the family ``name``."""

    def decorate(tiny_config: TinyConfig) -> TinyConfig:
        FAMILIES.add(name, DecoderFamily(name, model_types or (name,), tiny_config, rotary_per_layer_type))
        return tiny_config

    return decorate


def family_names() -> tuple[str, ...]:
    """The registered families, by name (sorted)."""
    return tuple(sorted(FAMILIES))


def family_named(name: str) -> DecoderFamily:
    """The family registered as ``name``."""
    return FAMILIES.get_or_raise(name)


def family_of(model_type: str | None) -> DecoderFamily | None:
    """The family covering ``config.model_type``, or None when tokenzip does not support it."""
    return next((family for _, family in sorted(FAMILIES.items()) if model_type in family.model_types), None)


def supported_model_types() -> tuple[str, ...]:
    """Every ``config.model_type`` a registered family covers."""
    return tuple(t for _, family in sorted(FAMILIES.items()) for t in family.model_types)
