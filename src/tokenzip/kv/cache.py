"""Cache surgery for the KV stage: bytes actually held, quantized layers, snapshots for cache reuse.

The layer classes and everything that reads transformers' cache fields live in
:mod:`tokenzip.models.cache_layers`; this module gives the KV stage (and users) their names.
Eviction stores the kept entries in a :class:`~tokenzip.models.cache_layers.CompressedLayer` when every (row,
KV head) keeps as many, else in a :class:`~tokenzip.models.cache_layers.PackedLayer` (each (row, head)'s entries
without padding: head-adaptive methods hold what they keep); quantization in a :class:`QuantizedLayer`, which
holds packed integer codes plus fp16 scales and zero-points, keeps the most recent tokens in full precision
(KIVI's residual), and dequantizes only transiently inside attention.
"""

from tokenzip.models.cache_layers import (
    CompressedLayer,
    PackedLayer,
    QuantizedLayer,
    cache_bytes,
    copy_cache,
    layer_at,
    layer_entries,
    layer_length,
    padded_storage,
    restore,
    snapshot,
    store,
    tensor_bytes,
)

__all__ = ["CompressedLayer", "PackedLayer", "QuantizedLayer", "cache_bytes", "copy_cache", "layer_at", "layer_entries",
           "layer_length", "padded_storage", "restore", "snapshot", "store", "tensor_bytes"]
