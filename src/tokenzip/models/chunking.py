"""Which chunk of a chunked prefill a model is reading, for the stages attached to it.

The kv stage reads a long context in chunks (:mod:`tokenzip.kv.chunked`); each chunk is one forward pass of
the decoder, with the cache of the chunks before it. A forward pass on a non-empty cache is otherwise a
decoding step, so the layers stage, which prunes a prefill's tokens and leaves decoding steps alone, asks
the model's :class:`~tokenzip.models.attention.Attachment` whether the pass it sees is a prefill chunk
(``attachment.chunk``). The kv stage says so for the duration of each chunk's forward pass, not during its own
extra passes (KVzip's reconstruction), which are read like decoding steps.
"""

from __future__ import annotations

from dataclasses import dataclass


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
