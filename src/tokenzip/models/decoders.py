"""Decoder adapter: where tokenzip finds what it needs inside a Hugging Face decoder.

One class covers every registered family (``tokenzip.models.families``: one file per family, holding its
quirks and its tiny test config) and the language model inside LLaVA. Nothing outside ``tokenzip.models``
touches transformers modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.models.families import family_of, supported_model_types


def _text_config(config: Any) -> Any:
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


@dataclass
class DecoderAdapter:
    """Uniform access to a decoder's attention modules, geometry and rotary embedding."""

    model: Any

    def __post_init__(self) -> None:
        config = _text_config(self.model.config)
        model_type = getattr(config, "model_type", None)
        family = family_of(model_type)
        if family is None:
            raise TokenzipError(
                f"unsupported model family {model_type!r} for the kv stage; supported: "
                f"{', '.join(supported_model_types())} (a new family is one file in tokenzip/models/families/)"
            )
        self.config = config
        self.model_type = model_type  # the config's, e.g. "gemma3_text"
        self.family = family  # the DecoderFamily (models/families/) covering it: how its rotary embedding is called
        self.decoder = self._find_decoder()
        self.attention_modules = [layer.self_attn for layer in self.decoder.layers]
        for i, module in enumerate(self.attention_modules):
            if getattr(module, "layer_idx", i) != i:
                raise TokenzipError(f"attention module {i} reports layer_idx {module.layer_idx}; cannot map the cache")

    def _find_decoder(self) -> Any:
        """The module holding ``layers``, ``rotary_emb`` and the mask creation (e.g. ``model.model``)."""
        model = self.model
        for candidate in (getattr(model, "language_model", None), getattr(getattr(model, "model", None),
                          "language_model", None), getattr(model, "model", None), model):
            if candidate is not None and hasattr(candidate, "layers") and hasattr(candidate, "rotary_emb"):
                return candidate
        raise TokenzipError(f"could not find the decoder layers of {type(model).__name__}")

    @property
    def num_layers(self) -> int:
        return len(self.attention_modules)

    @property
    def num_heads(self) -> int:
        return self.config.num_attention_heads

    @property
    def num_kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.num_heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.config.hidden_size // self.num_heads

    @property
    def max_positions(self) -> int:
        return int(getattr(self.config, "max_position_embeddings", 0) or 0)

    def layer_type(self, layer_idx: int) -> str:
        types = getattr(self.config, "layer_types", None)
        if types:
            return types[layer_idx]
        return "sliding_attention" if getattr(self.config, "sliding_window", None) else "full_attention"

    def is_sliding(self, layer_idx: int) -> bool:
        return self.layer_type(layer_idx) == "sliding_attention"

    def sliding_window(self) -> int | None:
        return getattr(self.config, "sliding_window", None)

    @torch.no_grad()
    def rotary(self, layer_idx: int, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` of the layer's rotary embedding at ``positions`` (shape ``(1, P)``), each ``(1, P, D)``."""
        return self.family.rotary(self.decoder.rotary_emb, like, positions, self.layer_type(layer_idx))
