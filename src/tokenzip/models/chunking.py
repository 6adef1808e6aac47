"""Which chunk of a chunked prefill a model is reading, for the stages attached to it.

The kv stage reads a long context in chunks (:mod:`tokenzip.kv.chunked`); each chunk is one forward pass of
the decoder, with the cache of the chunks before it. A forward pass on a non-empty cache is otherwise a
decoding step, so the layers stage, which prunes a prefill's tokens and leaves decoding steps alone, asks
here whether the pass it sees is a prefill chunk (:func:`reading`). The kv stage says so for the duration of
each chunk's forward pass (:func:`start_chunk`, :func:`end_chunk`), not during its own extra passes (KVzip's
reconstruction), which are read like decoding steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


_READING: dict[int, PrefillChunk] = {}  # id(model) -> the chunk its current forward pass reads


def start_chunk(model: Any, start: int, end: int, total: int) -> PrefillChunk:
    """The kv stage starts the forward pass of tokens ``start:end`` of a ``total``-token prefill of ``model``."""
    chunk = _READING[id(model)] = PrefillChunk(start, end, total)
    return chunk


def end_chunk(model: Any) -> None:
    """The chunk's forward pass is over (or failed)."""
    _READING.pop(id(model), None)


def reading(model: Any) -> PrefillChunk | None:
    """The prefill chunk ``model``'s current forward pass reads, or None (a whole prefill, or decoding)."""
    return _READING.get(id(model))
