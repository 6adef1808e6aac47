"""What tokenzip's kv scorers need to know of a GGUF model's attention, read from its metadata.

A :class:`Layout` stands in for :class:`tokenzip.models.decoders.DecoderAdapter` in the
:class:`~tokenzip.kv.base.LayerContext` a method scores: the number of layers, which ones use a sliding window, the
attention scaling, and the rotary embedding (``rotary``) for the methods that rotate keys or queries (Compactor's
pre-RoPE keys, KVzip's self-replay, expected attention). Architectures whose attention tokenzip has checked against
llama.cpp's: ``llama`` (SmolLM2) and ``gemma3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.ops.rope import rope_cos_sin

SUPPORTED = ("llama", "gemma3")
ROPE_NORM, ROPE_NEOX = 0, 2  # llama.cpp's rope types: pairs (2i, 2i+1), or (i, i + D/2)


@dataclass(frozen=True)
class Layout:
    arch: str
    num_layers: int
    n_head: int
    n_head_kv: int
    head_dim: int
    scaling: float
    sliding: tuple[bool, ...]
    rope_base: tuple[float, ...]  # per layer
    rope_scale: tuple[float, ...]  # per layer: linear position scaling
    interleaved: bool  # llama.cpp pairs rotary dims (2i, 2i+1): queries and keys read are rearranged to rotate-half

    @classmethod
    def from_model(cls, model: Any) -> Layout:
        """The layout of a :class:`tokenzip.engines.llamacpp.lib.LlamaModel`."""
        arch = model.arch
        if arch not in SUPPORTED:
            raise TokenzipError(f"the llama.cpp engine scores {', '.join(SUPPORTED)} models; this GGUF is {arch!r}")
        if model.rope_type not in (ROPE_NORM, ROPE_NEOX):
            raise TokenzipError(f"unsupported rotary embedding type {model.rope_type} in {model.path.name}")
        rot = int(model.meta(f"{arch}.rope.dimension_count") or model.head_dim)
        if rot != model.head_dim:
            raise TokenzipError(f"{model.path.name} rotates {rot} of {model.head_dim} dims; tokenzip reads full RoPE "
                                "only")
        base = model.meta_float(f"{arch}.rope.freq_base", 10000.0)
        scale = 1.0 / model.meta_float(f"{arch}.rope.scaling.factor", 1.0)
        sliding = tuple(False for _ in range(model.n_layer))
        bases = tuple(base for _ in range(model.n_layer))
        scales = tuple(scale for _ in range(model.n_layer))
        scaling = 1.0 / model.head_dim**0.5
        if arch == "gemma3":  # llama.cpp: every 6th layer global, local layers at base 10000 (Gemma 3's)
            pattern = int(model.meta_float("gemma3.attention.sliding_window_pattern", 6))
            sliding = tuple(i % pattern < pattern - 1 for i in range(model.n_layer))
            local = model.meta_float("gemma3.rope.freq_base_swa", 10000.0)
            bases = tuple(local if s else base for s in sliding)
            scales = tuple(1.0 if s else scale for s in sliding)
            if model.n_layer == 62:  # Gemma 3 27B scales by 1/sqrt(d_model / heads), as llama.cpp does
                scaling = (model.n_embd / model.n_head) ** -0.5
        return cls(arch=arch, num_layers=model.n_layer, n_head=model.n_head, n_head_kv=model.n_head_kv,
                   head_dim=model.head_dim, scaling=scaling, sliding=sliding, rope_base=bases, rope_scale=scales,
                   interleaved=model.rope_type == ROPE_NORM)

    def is_sliding(self, layer_idx: int) -> bool:
        return self.sliding[layer_idx]

    def rotary(self, layer_idx: int, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` of layer ``layer_idx``'s rotary embedding at ``positions`` ``(1, P)``, each ``(1, P, D)``
        (the signature of :meth:`tokenzip.models.decoders.DecoderAdapter.rotary`)."""
        cos, sin = rope_cos_sin(positions.cpu(), self.head_dim, self.rope_base[layer_idx],
                                self.rope_scale[layer_idx])
        return cos.to(like.device), sin.to(like.device)

