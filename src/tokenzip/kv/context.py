"""What a KV method's extra hooks see instead of the runtime: small typed contexts the runtime builds.

:meth:`KVMethod.prepare` gets a :class:`ReplayContext` (the prefill's ids, a replay pass over the cache, and a
memo shared by every method and ratio compressing the same prefill); :meth:`KVMethod.on_decode` gets a
:class:`DecodeContext` (one compressed layer during generation: how much it holds, its
:class:`~tokenzip.kv.base.LayerContext`, and a way to write it back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from tokenzip.kv.base import LayerContext, LayerResult

# on_attention(module, query, key), called in every layer during a replay
AttentionCallback = Callable[[Any, torch.Tensor, torch.Tensor], None]


@dataclass
class ReplayContext:
    """One prefill, as a method running extra passes over it (KVzip's reconstruction) may use it.

    ``replay(ids, on_attention)`` runs ``ids`` through the decoder after the prefill, calling
    ``on_attention(module, query, key)`` in every layer, and puts the cache back as it was; replayed tokens
    take the positions after ``seen``.
    """

    input_ids: torch.Tensor | None  # (B, n) the prefill's token ids (a chunked prefill: the newest chunk's)
    seen: int  # tokens the cache has seen so far
    bos_token_id: int | None
    tokenizer: Any  # for methods that tokenize an instruction; None when the caller gave none
    replay: Callable[[torch.Tensor, AttentionCallback], None]
    memo: dict[Any, tuple[Any, float]] = field(default_factory=dict)  # key -> (result, seconds it took)
    charged_seconds: float = 0.0  # seconds of memoized work reused here, charged as if done again

    def memoized(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, or its result for ``key`` from an earlier compression of the same prefill (another
        method or ratio); a reused result's seconds are added to ``charged_seconds``."""
        if key in self.memo:
            result, seconds = self.memo[key]
            self.charged_seconds += seconds
            return result
        start = time.perf_counter()
        result = compute()
        self.memo[key] = (result, time.perf_counter() - start)
        return result


@dataclass
class DecodeContext:
    """One compressed layer after a decoding step's attention: ``layer()`` builds its
    :class:`~tokenzip.kv.base.LayerContext` (entries and recent decoding queries), ``write(result)`` stores a
    compressed version of it and takes over its mask."""

    layer_idx: int
    seen: int  # tokens seen before this step
    stored: int  # entries the layer holds, this step's included
    layer: Callable[[], LayerContext]
    write: Callable[[LayerResult], None]
