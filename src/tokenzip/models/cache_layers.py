"""Cache layers that tokenzip owns: the public cache-layer contract of transformers, implemented here.

transformers' ``DynamicCache`` holds one layer object per decoder layer and asks it for ``update``,
``get_seq_length`` (tokens seen: where the next positions start), ``get_mask_sizes`` (the key length
and offset of the mask it builds) and a few housekeeping calls. Once tokenzip has evicted or
quantized a layer, it replaces that layer by one of these classes, which

* keep their own dtype and device (nothing is read from transformers' layer fields later),
* report the tokens *seen* as the sequence length, so the positions of later tokens (and
  ``generate``'s bookkeeping) are those of the original context, with no position ids injected,
* report mask sizes for the entries they really hold, offset so that the last column of the mask is
  the newest token: the masks transformers builds have the size of the layer.

When the (batch row, KV head)s keep different numbers of entries (head-adaptive budgets such as Ada-KV's and
KVzip's, or the rows of a padded batch), :class:`PackedLayer` holds each one's entries without padding and hands
attention a padded view built for that call only; :class:`CompressedLayer` holds a rectangle when the counts are
equal. Which of the entries attention sees are valid (per batch row and KV head) is not expressible in one mask
per layer type; it lives in :class:`tokenzip.models.attachment.CacheMasks`, which builds each managed
layer's mask inside tokenzip's registered attention function.

This module and :mod:`tokenzip.models.calling` are the only places that know transformers' cache
internals (the ``layers`` list and the layer fields of ``DynamicLayer``).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
from collections.abc import Iterator
from typing import Any

import torch
from transformers.cache_utils import CacheLayerMixin

from tokenzip.models.decoders import DecoderAdapter
from tokenzip.ops.packing import keep_newest, pack, right_aligned, segments, unpack
from tokenzip.ops.quantize import dequantize, quantize, quantized_bytes


def tensor_bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def cache_layers(cache: Any) -> list[Any]:
    """The per-decoder-layer objects of a transformers cache."""
    return list(getattr(cache, "layers", []))


def layer_at(cache: Any, layer_idx: int) -> Any:
    """The cache layer of decoder layer ``layer_idx``."""
    return cache.layers[layer_idx]


def layer_length(layer: Any) -> int:
    """Entries stored in a cache layer (not the number of tokens seen, which sliding layers also track)."""
    if hasattr(layer, "stored"):
        return layer.stored()
    keys = getattr(layer, "keys", None)
    return 0 if keys is None or keys.numel() == 0 else keys.shape[-2]


def layer_entries(layer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The full-precision keys and values a layer holds, ``(B, H_kv, S, D)`` each."""
    if hasattr(layer, "entries"):
        return layer.entries()
    return layer.keys, layer.values


def layer_bytes(layer: Any) -> int:
    """Bytes a layer really holds (packed codes and metadata for quantized layers)."""
    if hasattr(layer, "nbytes"):
        return layer.nbytes()
    return tensor_bytes(getattr(layer, "keys", None)) + tensor_bytes(getattr(layer, "values", None))


def cache_bytes(cache: Any) -> int:
    """Bytes held by a cache's key/value storage (packed codes and metadata for quantized layers)."""
    return sum(layer_bytes(layer) for layer in cache_layers(cache))


def snapshot(cache: Any) -> list[Any]:
    """A cheap snapshot of every layer (tensors are shared: cache updates build new tensors)."""
    return [copy.copy(layer) for layer in cache.layers]


def restore(cache: Any, saved: list[Any]) -> None:
    """Put a cache back to a snapshot taken with :func:`snapshot`."""
    cache.layers[:] = [copy.copy(layer) for layer in saved]


def copy_cache(cache: Any) -> Any:
    """A shallow copy of ``cache`` whose layers can be replaced without touching the original."""
    copied = copy.copy(cache)
    copied.layers = snapshot(cache)
    return copied


def sliding_window_of(layer: Any) -> int | None:
    """The window of a sliding-window layer (transformers' or tokenzip's), else None."""
    if not getattr(layer, "is_sliding", False):
        return None
    return getattr(layer, "sliding_window", None) or getattr(layer, "window", None)


_PACKED: contextvars.ContextVar[bool] = contextvars.ContextVar("tokenzip_packed_storage", default=True)


@contextlib.contextmanager
def padded_storage() -> Iterator[None]:
    """Inside the block, kept entries are stored as a padded rectangle (every (row, KV head) sized to the one that
    keeps most, the rest masked), as tokenzip did before :class:`PackedLayer`: the same entries and the same
    attention, more bytes held. For comparisons (tests, ``benchmarks/packed_cache.py``)."""
    token = _PACKED.set(False)
    try:
        yield
    finally:
        _PACKED.reset(token)


def store(cache: Any, layer_idx: int, keys: torch.Tensor, values: torch.Tensor, layer: Any = None,
          valid: torch.Tensor | None = None) -> torch.Tensor | None:
    """Replace layer ``layer_idx`` by the entries tokenzip kept, ``keys``/``values`` ``(B, H_kv, K, D)`` with their
    validity ``valid`` ``(B, 1 or H_kv, K)`` (None: all valid): ``layer`` when given (a quantized layer); else a
    :class:`PackedLayer` holding only the valid entries when some are not (a head-adaptive selection, a padded
    batch), or a :class:`CompressedLayer` holding the rectangle. Tokens seen and the sliding window carry over.

    Returns the validity of the stored entries as the layer lays them out (what
    :class:`tokenzip.models.attachment.CacheMasks` masks from now on)."""
    old = cache.layers[layer_idx]
    seen = old.get_seq_length()
    window = sliding_window_of(old)
    if layer is not None:
        layer.seen = seen
    elif valid is not None and not bool(valid.all()) and _PACKED.get():
        layer = PackedLayer.pack(keys, values, valid, seen, window=window)
        valid = layer.valid() if isinstance(layer, PackedLayer) else None
    else:
        layer = CompressedLayer(keys, values, seen, window=window)
    cache.layers[layer_idx] = layer
    return valid


class CompressedLayer(CacheLayerMixin):
    """A layer holding the entries tokenzip kept, ``(B, H_kv, S, D)``, after ``seen`` tokens went through it.

    New tokens are appended. With ``window`` (a compressed sliding-window layer) only the newest
    ``window - 1`` entries are kept after each update, as transformers' sliding layers do.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, seen: int, window: int | None = None) -> None:
        super().__init__()
        self.keys, self.values = keys, values
        self.seen = seen
        self.window = window
        self.is_sliding = window is not None
        self.device, self.dtype = keys.device, keys.dtype
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        keys = torch.cat([self.keys, key_states], dim=-2)
        values = torch.cat([self.values, value_states], dim=-2)
        self.seen += key_states.shape[-2]
        if self.window is not None:
            self.keys, self.values = keys[..., -(self.window - 1):, :], values[..., -(self.window - 1):, :]
        else:
            self.keys, self.values = keys, values
        return keys, values

    def stored(self) -> int:
        return self.keys.shape[-2]

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        # The held entries followed by the new tokens, aligned so that the new tokens sit at their positions.
        return self.stored() + query_length, self.seen - self.stored()

    def get_max_length(self) -> int:
        return self.window if self.window is not None else -1

    def reset(self) -> None:
        self.keys, self.values = self.keys[..., :0, :], self.values[..., :0, :]
        self.seen = 0

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a compressed tokenzip cache layer cannot be cropped; restore a snapshot instead")

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.keys = self.keys.repeat_interleave(repeats, dim=0)
        self.values = self.values.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keys, self.values = self.keys[indices, ...], self.values[indices, ...]


class PackedLayer(CacheLayerMixin):
    """A compressed layer whose (batch row, KV head)s hold different numbers of entries, stored without padding.

    Held: ``packed_keys``/``packed_values`` ``(T, D)``, the ``T`` kept entries row by row, head by head, in
    position order (:mod:`tokenzip.ops.packing`), with ``lengths`` ``(B, H_kv)``; and ``tail_keys``/``tail_values``
    ``(B, H_kv, t, D)``, the tokens appended since (every head gets every new token, so the tail needs no padding).
    Bytes held: ``(T + B H_kv t) x D x 2`` elements plus ``lengths``, so a head-adaptive selection at ratio r holds
    about ``1 - r`` of the dense cache (a padded rectangle holds the largest head's count for every head).

    Transient, per attention call: :meth:`update` returns a padded view ``(B, H_kv, max(lengths) + t + q, D)``,
    each (row, head)'s entries right-aligned after zeros, built by one concatenation and freed after the layer's
    attention (one layer at a time: at most one layer's padded keys and values exist at once). The view is the
    rectangle the padded layout would hold (:func:`tokenzip.ops.topk.valid_last`), so attention is the same; the
    mask comes from :meth:`valid` (``CacheMasks``). Where a rectangle concatenates its entries with the new ones,
    this concatenates each head's pieces: on SmolLM2-135M (30 layers, 3 KV heads, 1.6k tokens) 1.3-2.7 ms of CPU
    more per decoding step, 1-3% of a step (``benchmarks/packed-cache.md``).

    With ``window`` (a compressed sliding-window layer) each (row, head) keeps its newest ``window - 1`` entries
    after each update, as :class:`CompressedLayer` keeps the last ``window - 1`` slots of its rectangle.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, packed_keys: torch.Tensor, packed_values: torch.Tensor, lengths: torch.Tensor,
                 tail_keys: torch.Tensor, tail_values: torch.Tensor, seen: int, window: int | None = None) -> None:
        super().__init__()
        self._set_packed(packed_keys, packed_values, lengths)
        self.tail_keys, self.tail_values = tail_keys, tail_values
        self.seen = seen
        self.window = window
        self.is_sliding = window is not None
        self.device, self.dtype = packed_keys.device, packed_keys.dtype
        self.is_initialized = True

    @classmethod
    def pack(cls, keys: torch.Tensor, values: torch.Tensor, valid: torch.Tensor, seen: int,
             window: int | None = None) -> PackedLayer | CompressedLayer:
        """The valid entries of ``keys``/``values`` ``(B, H, K, D)`` (``valid`` ``(B, 1 or H, K)``); a
        :class:`CompressedLayer` when every (row, head) keeps the same number (a rectangle needs no padding)."""
        flat_keys, lengths = pack(keys, valid)
        flat_values, _ = pack(values, valid)
        b, h, _, d = keys.shape
        if bool((lengths == lengths.flatten()[0]).all()):
            n = int(lengths.flatten()[0])
            return CompressedLayer(flat_keys.view(b, h, n, d), flat_values.view(b, h, n, d), seen, window=window)
        tail = keys.new_zeros(b, h, 0, d)
        return cls(flat_keys, flat_values, lengths, tail, tail, seen, window=window)

    def _set_packed(self, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor) -> None:
        self.packed_keys, self.packed_values, self.lengths = keys, values, lengths
        # each (row, head)'s entries as views of the packed tensors (no bytes of their own), cut once
        self.key_pieces, self.value_pieces = segments(keys, lengths), segments(values, lengths)
        self.width = max(lengths.flatten().tolist(), default=0)  # slots the packed entries take in the view

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def _keys(self, *after: torch.Tensor) -> torch.Tensor:
        return unpack(self.packed_keys, self.lengths, self.width, after, self.key_pieces)

    def _values(self, *after: torch.Tensor) -> torch.Tensor:
        return unpack(self.packed_values, self.lengths, self.width, after, self.value_pieces)

    def entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The held entries as the padded view ``(B, H, stored(), D)`` (transient), right-aligned per head."""
        return self._keys(self.tail_keys), self._values(self.tail_values)

    def valid(self) -> torch.Tensor:
        """Which slots of :meth:`entries` hold an entry, ``(B, H, stored())``."""
        return right_aligned(self.lengths + self.tail_keys.shape[-2], self.stored())

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        keys, values = self._keys(self.tail_keys, key_states), self._values(self.tail_values, value_states)
        self.tail_keys = torch.cat([self.tail_keys, key_states], dim=-2)
        self.tail_values = torch.cat([self.tail_values, value_states], dim=-2)
        self.seen += key_states.shape[-2]
        if self.window is not None:
            self._keep_newest(self.window - 1)
        return keys, values

    def _keep_newest(self, most: int) -> None:
        """Each (row, head) keeps its newest ``most`` entries (the view's last ``most`` slots)."""
        t = self.tail_keys.shape[-2]
        if t >= most:
            self.tail_keys, self.tail_values = self.tail_keys[..., t - most :, :], self.tail_values[..., t - most :, :]
            most_packed = 0
        else:
            most_packed = most - t
        if self.width > most_packed:
            keys, _ = keep_newest(self.packed_keys, self.lengths, most_packed)
            self._set_packed(keys, *keep_newest(self.packed_values, self.lengths, most_packed))

    def stored(self) -> int:
        return self.width + self.tail_keys.shape[-2]

    def kept(self) -> torch.Tensor:
        """Entries held per (row, head), ``(B, H)``."""
        return self.lengths + self.tail_keys.shape[-2]

    def nbytes(self) -> int:
        return (tensor_bytes(self.packed_keys) + tensor_bytes(self.packed_values) + tensor_bytes(self.lengths)
                + tensor_bytes(self.tail_keys) + tensor_bytes(self.tail_values))

    def get_seq_length(self) -> int:
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.stored() + query_length, self.seen - self.stored()

    def get_max_length(self) -> int:
        return self.window if self.window is not None else -1

    def reset(self) -> None:
        self._set_packed(self.packed_keys[:0], self.packed_values[:0], torch.zeros_like(self.lengths))
        self.tail_keys, self.tail_values = self.tail_keys[..., :0, :], self.tail_values[..., :0, :]
        self.seen = 0

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a compressed tokenzip cache layer cannot be cropped; restore a snapshot instead")

    def offload(self) -> None:
        self._move("cpu")

    def prefetch(self) -> None:
        if self.packed_keys.device != self.device:
            self._move(self.device)

    def _move(self, device: Any) -> None:
        for name in ("packed_keys", "packed_values", "lengths", "tail_keys", "tail_values"):
            setattr(self, name, getattr(self, name).to(device, non_blocking=True))
        self._set_packed(self.packed_keys, self.packed_values, self.lengths)

    def _rows(self, select: Any) -> None:
        """Rebuild from the rows ``select`` (a function of a ``(B, ...)`` tensor) picks of the padded view."""
        valid = select(right_aligned(self.lengths, self.width))
        keys, lengths = pack(select(self._keys()), valid)
        self._set_packed(keys, pack(select(self._values()), valid)[0], lengths)
        self.tail_keys, self.tail_values = select(self.tail_keys), select(self.tail_values)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._rows(lambda x: x.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._rows(lambda x: x[indices, ...])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._rows(lambda x: x.index_select(0, beam_idx.to(x.device)))


class QuantizedLayer(CompressedLayer):
    """A cache layer stored as packed low-bit codes (KIVI, Liu et al., 2024, arXiv 2402.02750).

    Keys are quantized per channel (groups of ``group`` tokens), values per token (groups of
    ``value_group`` channels). The newest tokens, up to ``residual``, stay in full precision and
    are quantized ``group`` at a time as they age. ``blocks`` hold the quantized ``(keys, values)``;
    ZipCache stores salient tokens in a higher-precision block of their own.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, residual: int = 32, group: int = 128,
                 value_group: int = 64, bits: int = 4) -> None:
        super().__init__(keys[..., :0, :], values[..., :0, :], seen=0)
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
        layer = cls(keys, values, residual=residual, group=group,
                    value_group=math.gcd(value_group, keys.shape[-1]), bits=bits)
        for k, v, b in blocks or []:
            layer._add_block(k, v, b)
        layer.keys, layer.values = keys, values
        layer._flush()
        layer.seen = layer.stored()
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

    def entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every held entry dequantized (transient, for attention), oldest block first."""
        ks = [dequantize(qk, self.dtype) for qk, _ in self.blocks] + [self.keys]
        vs = [dequantize(qv, self.dtype) for _, qv in self.blocks] + [self.values]
        return torch.cat(ks, dim=-2), torch.cat(vs, dim=-2)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        self.seen += key_states.shape[-2]
        full = self.entries()  # dequantized transiently for this attention call
        self._flush()
        return full

    def stored(self) -> int:
        return self.n_quantized + self.keys.shape[-2]

    def nbytes(self) -> int:
        quantized = sum(quantized_bytes(qk) + quantized_bytes(qv) for qk, qv in self.blocks)
        return quantized + tensor_bytes(self.keys) + tensor_bytes(self.values)

    def reset(self) -> None:
        super().reset()
        self.blocks, self.n_quantized = [], 0

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a quantized tokenzip cache layer cannot be expanded over the batch")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("a quantized tokenzip cache layer cannot be reindexed over the batch")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("beam search is not supported on a quantized tokenzip cache")


def dense_cache_entries(model: Any, n_tokens: int) -> int:
    """Entries an uncompressed dynamic cache holds after ``n_tokens``, summed over layers: every token on a
    global layer, the last ``window - 1`` on a sliding-window layer (what transformers' layers store)."""
    adapter = DecoderAdapter(model)
    window = adapter.sliding_window()
    total = 0
    for i in range(adapter.num_layers):
        total += min(n_tokens, window - 1) if adapter.is_sliding(i) and window else n_tokens
    return total


def dense_cache_bytes(model: Any, n_tokens: int) -> int:
    """Bytes of keys and values an uncompressed dynamic cache holds after ``n_tokens`` (model dtype)."""
    adapter = DecoderAdapter(model)
    dtype = next(model.parameters()).dtype
    per_entry = 2 * adapter.num_kv_heads * adapter.head_dim * torch.empty((), dtype=dtype).element_size()
    return dense_cache_entries(model, n_tokens) * per_entry


def held_entries(cache: Any, valid: dict[int, torch.Tensor | None]) -> float:
    """Valid entries a (compressed) cache holds, summed over layers; ``valid`` maps layer -> per-row/head
    validity (as in CacheMasks), averaged over heads and rows where given."""
    total = 0.0
    for i, layer in enumerate(cache_layers(cache)):
        v = valid.get(i)
        total += float(layer_length(layer)) if v is None else float(v.float().sum(-1).mean())
    return total
