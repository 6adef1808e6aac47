"""KIVI: 2- or 4-bit KV cache, keys per channel and values per token, composable with eviction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.kv.base import KVMethod, LayerContext, LayerResult, Wrapping, build_base
from tokenzip.kv.cache import QuantizedLayer
from tokenzip.method import register


@register
@dataclass
class KIVI(Wrapping, KVMethod):
    """Store the cache as packed ``bits``-bit codes: keys quantized per channel in groups of ``group``
    tokens, values per token in groups of channels; the last ``residual`` tokens stay in full precision
    and are quantized ``group`` at a time as generation goes on. ``evict`` (a method name) first removes
    ``ratio`` of the entries, then what is kept is quantized.

    Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", ICML 2024, arXiv 2402.02750.
    Codes, fp16 scales and zero-points are what the cache holds (``tz.kv.cache_bytes`` counts them);
    attention dequantizes transiently, one layer at a time.
    """

    name = "kivi"
    paper = "Liu et al. 2024, arXiv 2402.02750"

    bounds = {"group": (1, None), "residual": (0, None)}
    choices = {"bits": (2, 4, 8)}

    bits: int = 4
    group: int = 128
    residual: int = 32
    evict: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_group(self, self.group, self.bits)
        if self.compress_sliding:
            raise TokenzipError("kivi does not quantize sliding-window layers (they are bounded already)")
        if self.evict is None and (self.ratio > 0 or self.budget is not None):
            raise TokenzipError("kivi alone removes no tokens: pass evict='snapkv' (or another kv method) "
                                "to evict `ratio` of the entries before quantizing, or leave ratio at 0")
        if self.evict is not None:
            self.evict = build_base(self.evict, self.ratio, self.budget, False)

    def wrapped(self) -> KVMethod | None:
        return self.evict  # what it needs before scoring (captures, KVzip's replay) is the eviction's

    def changes_storage(self) -> bool:
        return True

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        if self.evict is not None and not self.evict.is_noop(ctx.n_tokens):
            kept = self.evict.compress_layer(ctx)
        else:
            kept = LayerResult(ctx.keys, ctx.values, ctx.valid_per_head())
        return self.quantize(kept)

    def compress_model(self, contexts: list[LayerContext]) -> list[LayerResult]:
        """Evict with ``evict``'s own allocation over the layers (KVzip's global top-k), then quantize."""
        if self.evict is None or self.evict.is_noop(max(ctx.n_tokens for ctx in contexts)):
            return [self.compress_layer(ctx) for ctx in contexts]
        return [self.quantize(kept) for kept in self.evict.compress_layers(contexts)]

    def quantize(self, kept: LayerResult) -> LayerResult:
        layer = QuantizedLayer.from_tensors(kept.keys, kept.values, self.bits, self.residual, self.group)
        return LayerResult(kept.keys, kept.values, kept.valid, layer=layer)


def check_group(method: KVMethod, group: int, bits: int) -> None:
    """Keys are quantized in groups of ``group`` tokens, packed ``8 // bits`` codes to a byte along the group."""
    per_byte = 8 // bits
    if group % per_byte:
        raise TokenzipError(f"{method.stage}.{method.name}: parameter group must be a multiple of {per_byte} at "
                            f"{bits} bits ({per_byte} codes are packed to a byte), got {group}")
