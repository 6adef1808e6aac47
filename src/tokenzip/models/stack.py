"""Where a model keeps what the layers stage hooks (:class:`LayerStack`, built by each family's adapter:
``encoders.py``, ``vision.py``, ``decoder_layers.py``), what the hooks call on the layers runtime
(:class:`StackRuntime`), and the attention statistics a layers method may ask for, computed from one attention call's
queries and keys (:func:`statistics`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tokenzip.models.attachment import AttachedMethod
from tokenzip.models.chunking import PrefillChunk
from tokenzip.ops.attention import attention_probabilities, cls_attention, last_tokens_attention
from tokenzip.ops.geometry import key_l1_norm


class TokenSlots(Protocol):
    """What the decoder hooks read of the layers runtime's token state (``tokenzip.layers.runtime.TokenState``):
    B rows of M current slots."""

    valid: torch.Tensor  # (B, M) a real token in this slot
    position: torch.Tensor  # (B, M) input position of each slot's token
    changed: bool  # tokens left (or were merged) in this forward pass


class StackRuntime(Protocol):
    """What the layer-stack hooks call on the layers runtime. :class:`tokenzip.layers.runtime.LayersRuntime`
    satisfies it structurally (``models/`` may not import ``layers/``; ``tests/layers`` checks the match); the
    hooks see nothing else of it."""

    @property
    def method(self) -> AttachedMethod: ...

    @property
    def steps(self) -> list[int]:
        """The layers after which tokens leave (-1: before the first layer)."""

    @property
    def state(self) -> TokenSlots | None:
        """The current forward pass's token state (None before a prefill begins)."""

    def reset(self) -> None:
        """A new prefill starts."""

    def reduces_input(self) -> bool:
        """Whether tokens leave before the first layer (a VLM's image tokens)."""

    def begin(self, hidden: torch.Tensor, padding: torch.Tensor | None = None,
              candidates: torch.Tensor | None = None, chunk: PrefillChunk | None = None) -> None:
        """A forward pass starts with ``hidden`` (B, N, C)."""

    def reduce_input(self, hidden: torch.Tensor) -> torch.Tensor:
        """The reduction before the first layer."""

    def wants(self, layer: int) -> frozenset[str]:
        """The statistics to capture from layer ``layer``'s attention call."""

    def capture(self, layer: int, stats: dict[str, torch.Tensor]) -> None:
        """Hand over the statistics captured at layer ``layer``."""

    def mask(self, default: Any, dtype: torch.dtype, window: int | None = None) -> Any:
        """The attention mask for the current token set (``default``, the model's, until tokens left)."""

    def after_layer(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s output, reduced where the schedule says so (restored after the last layer)."""


@dataclass
class LayerStack:
    """Where a model keeps its layers, for the layers stage."""

    architecture: str  # encoder | vision | decoder | vlm
    model_type: str  # bert, vit, dinov2, clip, llama, llava, ...
    model: Any  # the PreTrainedModel whose attention implementation is routed
    root: Any  # the module whose forward receives ``attention_mask`` (2-D padding mask)
    layers: list[Any]
    attention: list[Any]  # per layer: the module the attention function is called with
    extra: dict[str, Any] = field(default_factory=dict)


class StackHooks:
    """The layers runtime's hooks on a layer stack, as methods (ToMe's one adapter class per framework): after every
    layer the runtime reduces (or restores) the hidden states; in every attention call it builds the mask of the
    current token set and captures the statistics its method asked for. Decoders add their own
    (:class:`tokenzip.models.decoder_layers.DecoderHooks`)."""

    def __init__(self, stack: LayerStack, runtime: StackRuntime) -> None:
        self.stack, self.runtime = stack, runtime

    def after_layer(self, i: int, module: Any, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (self.runtime.after_layer(i, output[0]), *output[1:])
        return self.runtime.after_layer(i, output)

    def on_attention(self, i: int, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     mask: Any, kwargs: dict) -> Any:
        mask = self.runtime.mask(mask, query.dtype)
        self.capture(i, query, key, mask, kwargs)
        return mask

    def capture(self, i: int, query: torch.Tensor, key: torch.Tensor, mask: Any, kwargs: dict,
                newest: int | None = None) -> dict | None:
        """The statistics layer ``i``'s method wants from this attention call (None: none), given to the runtime;
        ``newest``: those of the last ``newest`` keys only (a prefill chunk's tokens, after the entries kept from
        earlier chunks, which are not theirs)."""
        wants = self.runtime.wants(i)
        if not wants:
            return None
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        stats = statistics(wants, query, key, scaling, mask)
        if newest is not None:
            stats = {name: _newest(name, value, newest) for name, value in stats.items()}
        self.runtime.capture(i, stats)
        return stats


def _newest(name: str, value: torch.Tensor, n: int) -> torch.Tensor:
    """A statistic over keys, restricted to the last ``n`` keys."""
    return value[..., -n:, :] if name == "keys" else value[..., -n:]


def statistics(wants: frozenset[str], query: torch.Tensor, key: torch.Tensor, scaling: float,
               mask: Any) -> dict[str, torch.Tensor]:
    """The statistics a method asked for, from one attention call's queries and keys."""
    bias = mask if isinstance(mask, torch.Tensor) else None
    out: dict[str, torch.Tensor] = {}
    if "keys" in wants:
        out["keys"] = key.mean(dim=1)
    if "key_l1" in wants:
        out["key_l1"] = key_l1_norm(key)
    if "cls_attention" in wants:
        out["cls_attention"] = cls_attention(query, key, scaling, bias)
    if "last_attention" in wants:
        out["last_attention"] = last_tokens_attention(query, key, scaling, bias)
    if "attention" in wants:
        out["attention"] = attention_probabilities(query, key, scaling, bias)
    return out
