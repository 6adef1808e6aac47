"""The KV runtime's phases: what the forward pass it is watching does, as a value instead of flags.

The runtime (:class:`tokenzip.kv.runtime.KVRuntime`) is in one phase at a time, set when the decoder's forward
pass starts and left when it ends:

* :class:`Prefill`: a pass from an empty cache, or one chunk of a chunked prefill: capture what the method
  scores by, then compress each layer (or the whole model) after its attention;
* :class:`Decode`: a pass on a cache that holds entries (a question, a generated token, a served request):
  mask each compressed layer from the entries it holds, let decoding-time methods act;
* :class:`Replay`: an extra pass over a prefill (KVzip's reconstruction): the method's callback sees every
  layer, nothing is captured, compressed or counted, and the cache is put back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenzip.kv.context import AttentionCallback
from tokenzip.models.chunking import PrefillChunk


@dataclass(frozen=True)
class Prefill:
    """A pass that reads context: ``q`` tokens, the whole prefill or ``chunk`` of a chunked one."""

    q: int
    chunk: PrefillChunk | None = None

    def masks_stored(self) -> bool:
        """Only a later chunk's layers hold entries the kv method reduced (a whole prefill's start empty)."""
        return self.chunk is not None


@dataclass(frozen=True)
class Decode:
    """A pass of ``q`` tokens after the context (0 before any pass)."""

    q: int = 0

    def masks_stored(self) -> bool:
        return True


@dataclass(frozen=True)
class Replay:
    """An extra pass over a prefill, inside ``outer``: ``on_attention(module, query, key)`` in every layer."""

    outer: Prefill | Decode
    on_attention: AttentionCallback

    def masks_stored(self) -> bool:
        return True


Phase = Prefill | Decode | Replay
