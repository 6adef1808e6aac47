"""What a KV method sees instead of the runtime: small typed contexts the runtime builds.

:meth:`KVMethod.compress_layer` gets a :class:`LayerContext` (one layer's entries, the prefill's last queries,
padding) and returns a :class:`LayerResult` (the entries kept, and which are valid per row and head).
:meth:`KVMethod.prepare` gets a :class:`ReplayContext` (the prefill's ids, a replay pass over the cache, and a
memo shared by every method and ratio compressing the same prefill); :meth:`KVMethod.on_decode` gets a
:class:`DecodeContext` (one compressed layer during generation: how much it holds,
its :class:`LayerContext`, and a way to write it back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.ops.rope import rotate_half, unrotate


@dataclass
class LayerContext:
    """What a method may use to compress one layer's cache (shapes: B batch, H heads, N tokens, D dims)."""

    layer_idx: int
    num_layers: int
    keys: torch.Tensor  # (B, H_kv, N, D), post-RoPE, as cached
    values: torch.Tensor  # (B, H_kv, N, D)
    queries: torch.Tensor | None  # (B, H_q, W, D): the last W prefill queries (post-RoPE)
    token_valid: torch.Tensor | None  # (B, N) or (B, H_kv, N): False for padding / dropped; None: all valid
    scaling: float
    is_sliding: bool
    adapter: Any  # tokenzip.models.decoders.DecoderAdapter
    received: torch.Tensor | None = None  # (B, H_q, N): attention received from every prefill query
    extra: dict[str, Any] | None = None  # method-specific captures (e.g. KVzip's replay queries)
    # chunked prefill (tokenzip.kv.chunked): real tokens seen so far per row, ``(B,)`` (None: the N entries are the
    # whole context), and what the method carried for the entries kept from earlier chunks (``carry``), (B, H_kv, N)
    seen: torch.Tensor | None = None
    carried: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return self.keys.shape[2]

    @property
    def chunked(self) -> bool:
        """True when compressing during a chunked prefill: the entries are what was kept plus the newest chunk."""
        return self.seen is not None

    def seen_lengths(self) -> torch.Tensor:
        """Real tokens seen per row, ``(B,)``: the context so far in a chunked prefill, else the real lengths."""
        return self.real_lengths() if self.seen is None else self.seen

    def real_lengths(self) -> torch.Tensor:
        """Valid (non-padding) entries per batch row, ``(B,)`` (the fewest over heads when per head)."""
        b, n = self.keys.shape[0], self.keys.shape[2]
        if self.token_valid is None:
            return torch.full((b,), n, dtype=torch.long, device=self.keys.device)
        counts = self.token_valid.sum(-1).long()
        return counts.amin(-1) if counts.ndim == 2 else counts

    def valid_per_head(self) -> torch.Tensor | None:
        """``token_valid`` as ``(B, 1 or H_kv, N)``."""
        v = self.token_valid
        return None if v is None else (v[:, None, :] if v.ndim == 2 else v)

    def valid_tokens(self) -> torch.Tensor | None:
        """``token_valid`` as ``(B, N)`` (an entry valid in the first head), or None when all are valid."""
        v = self.token_valid
        return None if v is None else (v if v.ndim == 2 else v[:, 0])

    def positions(self) -> torch.Tensor:
        """Position of each cached entry, ``(B, N)``: real tokens count from 0 (left padding is negative)."""
        n = self.n_tokens
        offset = (n - self.real_lengths())[:, None]
        return torch.arange(n, device=self.keys.device)[None, :] - offset

    def rotated(self, x: torch.Tensor, by: int) -> torch.Tensor:
        """``x`` ``(B, H, n, D)``, post-RoPE, rotated ``by`` positions further (rotations compose); as it is when
        there is no adapter (hand-built contexts)."""
        if self.adapter is None:
            return x.float()
        cos, sin = self.adapter.rotary(self.layer_idx, torch.tensor([[by]], device=x.device), x)
        return x.float() * cos[:, None].float() + rotate_half(x.float()) * sin[:, None].float()

    def unrotated_keys(self) -> torch.Tensor:
        """The keys before the rotary embedding, ``(B, H_kv, N, D)`` (as stored when there is no adapter: hand-built
        contexts)."""
        if self.adapter is None:
            return self.keys.float()
        rows = []
        for b, pos in enumerate(self.positions().clamp_min(0)):
            cos, sin = self.adapter.rotary(self.layer_idx, pos[None], self.keys)
            rows.append(unrotate(self.keys[b : b + 1].float(), cos[:, None].float(), sin[:, None].float()))
        return torch.cat(rows)


@dataclass
class LayerResult:
    """A compressed layer: kept entries ``(B, H_kv, M, D)`` and their validity ``(B, H_kv, M)``.

    ``layer`` replaces the transformers cache layer when the storage itself changes (quantization);
    ``indices`` ``(B, H_kv, M)`` say which entries were kept, where a method can tell (a chunked prefill
    carries per-entry state with them).
    """

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor | None
    layer: Any = None
    indices: torch.Tensor | None = None



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
