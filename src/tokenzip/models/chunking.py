"""Which chunk of a chunked prefill a model is reading, for the stages attached to it.

The kv stage reads a long context in chunks (:mod:`tokenzip.kv.chunked`); each chunk is one forward pass of
the decoder, with the cache of the chunks before it. A forward pass on a non-empty cache is otherwise a
decoding step, so the layers stage, which prunes a prefill's tokens and leaves decoding steps alone, asks
the model's :class:`~tokenzip.models.attachment.Attachment` whether the pass it sees is a prefill chunk
(``attachment.chunk``). The kv stage says so for the duration of each chunk's forward pass, not during its own
extra passes (KVzip's reconstruction), which are read like decoding steps.

:func:`prefill_in_chunks` is the plain baseline of a chunked prefill: transformers alone, the same chunks fed
in turn to its own dynamic cache, nothing attached and nothing evicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.models.decoders import DecoderAdapter


@dataclass
class PrefillChunk:
    """One chunk of a prefill of ``total`` tokens: tokens ``start`` to ``end``.

    ``owned_from``: the layers from this index on build their attention mask in the layers stage for this
    chunk (their tokens were pruned inside the model: the kv stage leaves their mask alone); None: none.
    """

    start: int
    end: int
    total: int
    owned_from: int | None = None

    @property
    def first(self) -> bool:
        return self.start == 0

    @property
    def last(self) -> bool:
        return self.end >= self.total

    def owns(self, layer_idx: int) -> bool:
        """Whether the layers stage builds ``layer_idx``'s mask in this chunk."""
        return self.owned_from is not None and layer_idx >= self.owned_from


def chunk_sizes(n: int, chunk_size: int) -> list[int]:
    """``n`` tokens in the fewest chunks of at most ``chunk_size``, as equal as possible (later ones larger),
    so the last chunk is never a sliver with too few queries to score by."""
    count = -(-n // chunk_size)
    small, extra = divmod(n, count)
    return [small + (1 if i >= count - extra else 0) for i in range(count)]


@torch.no_grad()
def prefill_in_chunks(model: Any, input_ids: torch.Tensor, chunk_size: int) -> Any:
    """Prefill ``input_ids`` ``(1, N)`` through ``model``'s decoder ``chunk_size`` tokens at a time, each chunk
    attending to transformers' own dynamic cache of the chunks before it; nothing is evicted. Returns the cache.

    This is what chunking alone does (sliding-window layers then never attend beyond their window plus one
    chunk, and no ``N x N`` mask is built), the baseline against which compression between chunks is measured.
    The chunks are those of a compressed chunked prefill (:func:`chunk_sizes`); the decoder runs without the
    language-model head, as tokenzip's own prefill does.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise TokenzipError(f"chunk_size is a number of tokens >= 1, got {chunk_size!r}")
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise TokenzipError(f"expected token ids of shape (batch, tokens) with at least one token, got "
                            f"{tuple(input_ids.shape)}")
    decoder = DecoderAdapter(model).decoder
    cache, start = new_cache(model), 0
    for size in chunk_sizes(input_ids.shape[1], chunk_size):
        decoder(input_ids=input_ids[:, start : start + size], use_cache=True, **cache_kwargs(decoder, cache))
        start += size
    return cache
