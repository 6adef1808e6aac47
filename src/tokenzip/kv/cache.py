"""Cache surgery: bytes actually held, quantized cache layers, snapshots for cache reuse.

Eviction writes smaller tensors into the transformers cache layers (``layer.keys``/``layer.values``
are public fields of ``DynamicLayer``). Quantization replaces a layer by :class:`QuantizedLayer`,
which stores packed integer codes plus fp16 scales and zero-points, keeps the most recent tokens in
full precision (KIVI's residual), and dequantizes only transiently inside attention.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from tokenzip.reduce import dequantize, quantize, quantized_bytes


def tensor_bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def cache_bytes(cache: Any) -> int:
    """Bytes held by a cache's key/value storage (packed codes and metadata for quantized layers)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        if hasattr(layer, "nbytes"):
            total += layer.nbytes()
        else:
            total += tensor_bytes(getattr(layer, "keys", None)) + tensor_bytes(getattr(layer, "values", None))
    return total


def layer_length(layer: Any) -> int:
    """Entries stored in a cache layer (not the number of tokens seen, which sliding layers also track)."""
    if hasattr(layer, "stored"):
        return layer.stored()
    keys = getattr(layer, "keys", None)
    return 0 if keys is None or keys.numel() == 0 else keys.shape[-2]


def snapshot(cache: Any) -> list[Any]:
    """A cheap snapshot of every layer (tensors are shared: cache updates build new tensors)."""
    return [copy.copy(layer) for layer in cache.layers]


def restore(cache: Any, saved: list[Any]) -> None:
    """Put a cache back to a snapshot taken with :func:`snapshot`."""
    cache.layers[:] = [copy.copy(layer) for layer in saved]


class QuantizedLayer(DynamicLayer):
    """A cache layer stored as packed low-bit codes (KIVI, Liu et al., 2024, arXiv 2402.02750).

    Keys are quantized per channel (groups of ``group`` tokens), values per token (groups of
    ``value_group`` channels). The newest tokens, up to ``residual``, stay in full precision and
    are quantized ``group`` at a time as they age. ``blocks`` hold ``(bits, keys, values)``; ZipCache
    stores salient tokens in a higher-precision block of their own.
    """

    is_sliding = False
    is_croppable = False

    def __init__(self, residual: int = 32, group: int = 128, value_group: int = 64, bits: int = 4) -> None:
        super().__init__()
        self.residual, self.group, self.value_group, self.bits = residual, group, value_group, bits
        self.blocks: list[tuple[dict, dict]] = []
        self.n_quantized = 0

    @classmethod
    def from_tensors(
        cls, keys: torch.Tensor, values: torch.Tensor, bits: int, residual: int = 32, group: int = 128,
        value_group: int = 64, blocks: list[tuple[torch.Tensor, torch.Tensor, int]] | None = None,
    ) -> QuantizedLayer:
        """Build from full-precision ``(B, H, N, D)`` tensors: all but the last ``residual`` tokens are
        quantized at ``bits`` (only whole groups; the remainder stays in the residual). ``blocks`` adds
        extra ``(keys, values, bits)`` groups stored ahead of these (ZipCache's salient tokens)."""
        layer = cls(residual=residual, group=group, value_group=math.gcd(value_group, keys.shape[-1]), bits=bits)
        layer.lazy_initialization(keys, values)
        for k, v, b in blocks or []:
            layer._add_block(k, v, b)
        layer.keys, layer.values = keys, values
        layer._flush()
        return layer

    def _add_block(self, keys: torch.Tensor, values: torch.Tensor, bits: int) -> None:
        n = keys.shape[-2]
        if n == 0:
            return
        group = self.group if n % self.group == 0 else n  # a block of its own size when not a multiple
        qk = quantize(keys, bits, dim=-2, group=group)
        qv = quantize(values, bits, dim=-1, group=self.value_group)
        self.blocks = [*self.blocks, (qk, qv)]
        self.n_quantized += n

    def _flush(self) -> None:
        """Quantize whole groups of the oldest residual tokens until at most ``residual`` remain."""
        excess = self.keys.shape[-2] - self.residual
        n = (excess // self.group) * self.group if excess > 0 else 0
        if n:
            self._add_block(self.keys[..., :n, :], self.values[..., :n, :], self.bits)
            self.keys, self.values = self.keys[..., n:, :], self.values[..., n:, :]

    def _full(self) -> tuple[torch.Tensor, torch.Tensor]:
        ks = [dequantize(qk, self.dtype) for qk, _ in self.blocks] + [self.keys]
        vs = [dequantize(qv, self.dtype) for _, qv in self.blocks] + [self.values]
        return torch.cat(ks, dim=-2), torch.cat(vs, dim=-2)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        full = self._full()  # dequantized transiently for this attention call
        self._flush()
        return full

    def stored(self) -> int:
        return self.n_quantized + (self.keys.shape[-2] if self.keys is not None and self.keys.numel() else 0)

    def get_seq_length(self) -> int:
        return self.stored()

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.stored() + query_length, 0

    def nbytes(self) -> int:
        quantized = sum(quantized_bytes(qk) + quantized_bytes(qv) for qk, qv in self.blocks)
        return quantized + tensor_bytes(self.keys) + tensor_bytes(self.values)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a quantized tokenzip cache layer cannot be cropped; restore a snapshot instead")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("beam search is not supported on a quantized tokenzip cache")
