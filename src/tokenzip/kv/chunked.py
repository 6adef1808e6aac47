"""Chunked prefill: compress while prefilling, so a long context is read in bounded memory.

A dense prefill holds every entry of every layer and pays attention over ``N x N`` before a single
entry is dropped. Here the context goes through the decoder ``chunk_size`` tokens at a time (chunks of
equal size, at most ``chunk_size``); right after a layer's attention on a chunk, the layer is reduced to
its budget by the method, scoring what it kept from earlier chunks together with the new chunk's entries
(the chunk's last queries are the observation window). So a compressed layer never holds more than
``budget + chunk`` entries, and attention costs ``chunk x (budget + chunk)`` per chunk instead of
``N x N`` (the idea of kvpress issue #178; streaming eviction as in H2O and StreamingLLM).

* Budget: a ``budget`` is the entries kept per layer and head after every chunk; a ``ratio`` keeps
  ``kept(tokens seen so far)`` after each chunk, so the final cache has the size a dense prefill
  compressed at that ratio would have, and a layer holds at most ``kept(seen) + chunk``.
* Positions: tokenzip's cache layers report the tokens seen, so each chunk gets the positions of the
  original tokens from transformers itself; sliding-window layers keep their window.
* Methods that need per-entry history (H2O's accumulated attention, KVzip's maximum over
  reconstructions) carry it from chunk to chunk with the kept entries (:meth:`KVMethod.carry`).
* Methods that compress the whole model at once (KVzip) compress after each chunk's forward pass.

* A prefill of at most ``chunk_size`` tokens is one chunk: it is compressed once, after it, exactly as
  without ``chunk_size`` (the same entries kept, ``ratio="auto"`` included).
* ``ratio="auto"``: after every chunk each layer keeps the fewest top entries (by the running score) whose
  share of the mass the method measured on this chunk stays within ``tolerance``, and never fewer than
  ``1 - max_ratio`` of the tokens seen.

The chunks are fed from the forward pre-hook of the decoder: a prefill longer than ``chunk_size`` runs
its first chunks through the decoder there, and the caller's own forward pass carries on with the last
chunk. Its output therefore covers the last chunk's tokens only (the logits ``generate`` needs).

A :class:`ChunkedPrefill` owns where the prefill stands and what it carries from chunk to chunk; the runtime
that runs it (:class:`tokenzip.kv.runtime.KVRuntime`) reads the current chunk from it, and it uses of the
runtime only what :class:`LayerStore` names (a layer's context, writing a compressed layer, a method's extra
passes).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Protocol

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.base import KVMethod
from tokenzip.kv.context import LayerContext, LayerResult
from tokenzip.models.calling import cache_kwargs, call_cache, new_cache
from tokenzip.models.chunking import PrefillChunk, chunk_sizes
from tokenzip.models.masks import CacheMasks

SEQUENCE_INPUTS = ("input_ids", "inputs_embeds", "position_ids")  # sliced to each chunk along the last token axis


class LayerStore(Protocol):
    """What a chunked prefill uses of the runtime running it: its cache's layers, as the method sees them."""

    def context(self, cache: Any, i: int) -> LayerContext:
        """Layer ``i``'s stored entries and this chunk's captures."""

    def write(self, cache: Any, i: int, result: LayerResult) -> None:
        """Store a compressed layer and take over its mask."""

    def prepare(self, method: KVMethod, contexts: list[LayerContext], cache: Any) -> None:
        """Let ``method`` run its extra passes over the prefill before scoring ``contexts``."""


def check_chunk_size(chunk_size: Any) -> None:
    """A chunk size is a whole number of tokens, at least 1."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise TokenzipError(f"chunk_size is a number of tokens >= 1, got {chunk_size!r}")


def _as_kwargs(module: Any, args: tuple, kwargs: dict) -> dict:
    names = [n for n in inspect.signature(module.forward).parameters if n != "self"]
    return {**dict(zip(names, args)), **kwargs}


def _slice(kwargs: dict, start: int, end: int) -> dict:
    out = dict(kwargs)
    for name in SEQUENCE_INPUTS:
        value = kwargs.get(name)
        if isinstance(value, torch.Tensor):
            out[name] = value[:, start:end] if name != "position_ids" else value[..., start:end]
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        out["attention_mask"] = mask[:, :end]  # the mask covers the past and the chunk
    return out


class ChunkedPrefill:
    """One chunked prefill of ``method`` over a model's cache: where it stands, and what it carries.

    ``store``: the runtime's layers (:class:`LayerStore`); ``targets``: the layers the method compresses;
    ``entered``: per layer, the entries it took in during this prefill (per row; the runtime counts them in each
    attention call, this prefill reads them to measure a ratio against).
    """

    def __init__(self, store: LayerStore, method: KVMethod | None, chunk_size: int, targets: list[int],
                 entered: dict[int, Any]) -> None:
        self.store = store
        self.method = method
        self.chunk_size = chunk_size
        self.targets = targets
        self.entered = entered
        self.valid: torch.Tensor | None = None  # (B, N) token validity of the whole input (None: no padding)
        self.ids: torch.Tensor | None = None  # (B, N) the whole input's token ids (None for embeddings)
        self.total = 0  # tokens of the whole input
        self.feeding = True  # inside the first chunks (run from the pre-hook), not the caller's last one
        self.start = 0  # tokens before the current chunk
        self.end = 0  # tokens up to the end of the current chunk
        self.carried: dict[int, torch.Tensor] = {}  # per-entry state the method carries from chunk to chunk

    # --- reading the context in chunks --------------------------------------------------------------
    def feed(self, decoder: Any, model: Any, args: tuple, kwargs: dict) -> dict:
        """Run all chunks but the last of a long prefill through ``decoder`` (``model``'s); the keyword arguments of
        the last one, which the caller's forward pass computes. Called from the decoder's forward pre-hook when a
        prefill (a forward pass from an empty cache) is longer than ``chunk_size``."""
        kwargs = _as_kwargs(decoder, args, kwargs)
        mask = kwargs.get("attention_mask")
        if mask is not None and not (isinstance(mask, torch.Tensor) and mask.ndim == 2):
            raise TokenzipError("a chunked prefill needs a 2-D attention mask (B, N) or none; got a prepared mask")
        if call_cache(decoder, (), kwargs) is None:
            kwargs.update(cache_kwargs(decoder, new_cache(model)))
        kwargs["use_cache"] = True
        ids = kwargs.get("input_ids")
        n = (ids if ids is not None else kwargs["inputs_embeds"]).shape[1]
        self.valid = mask.bool() if isinstance(mask, torch.Tensor) and not bool(mask.all()) else None
        self.ids, self.total = ids, n
        for size in chunk_sizes(n, self.chunk_size)[:-1]:
            decoder(**_slice(kwargs, self.start, self.start + size))
        self.feeding = False
        return _slice(kwargs, self.start, n)

    def begin(self, q: int) -> PrefillChunk:
        """Start a chunk of ``q`` tokens; the chunk, for the stages attached to the model."""
        self.end = self.start + q
        return PrefillChunk(self.start, self.end, self.total)

    def finish(self) -> None:
        """After a chunk's forward pass: the next chunk starts where this one ended."""
        self.start = self.end

    @property
    def token_valid(self) -> torch.Tensor | None:
        """``(B, end)``: the validity of the tokens read so far (None: no padding)."""
        return None if self.valid is None else self.valid[:, : self.end]

    @property
    def input_ids(self) -> torch.Tensor | None:
        """``(B, q)``: the current chunk's token ids (None for embeddings)."""
        return None if self.ids is None else self.ids[:, self.start : self.end]

    # --- compressing between chunks -----------------------------------------------------------------
    def _seen(self, ctx: LayerContext) -> torch.Tensor:
        """Entries layer ``ctx.layer_idx`` has taken in so far per row: the tokens seen, or fewer where a layers
        method pruned them (a ratio then keeps its share of what the layer was given, as after a whole prefill)."""
        seen = self.entered.get(ctx.layer_idx, self.end)
        return torch.as_tensor(seen, device=ctx.keys.device).long().expand(ctx.keys.shape[0]).clone()

    def context(self, cache: Any, i: int) -> LayerContext:
        """Layer ``i``'s context after a chunk: kept entries plus the chunk's, tokens seen, the carried state."""
        ctx = self.store.context(cache, i)
        carried = self.carried.get(i)
        if carried is not None:  # the new chunk's entries have carried nothing yet
            carried = carried.expand(ctx.keys.shape[0], -1, -1)
            fresh = carried.new_zeros(*carried.shape[:2], ctx.n_tokens - carried.shape[-1])
            carried = torch.cat([carried, fresh], dim=-1)
        return dataclasses.replace(ctx, seen=self._seen(ctx), carried=carried)

    def reduce(self, ctx: LayerContext, result: LayerResult | None = None) -> LayerResult:
        """Compress one layer's context to its target (or keep it whole when under it) and carry the method's
        per-entry state along with the kept entries."""
        method = self.method
        if result is None:
            result = method.compress_layer(ctx) if _must_reduce(method, ctx) else _keep_all(ctx)
        state = method.carry(ctx)
        if state is not None:
            if result.indices is None:
                raise TypeError(f"{method.name} carries state between chunks but its compress_layer returned no "
                                "indices")
            state = state.expand(*result.indices.shape[:2], state.shape[-1])
            self.carried[ctx.layer_idx] = state.gather(-1, result.indices)
        return result

    def compress_layer(self, cache: Any, i: int) -> None:
        """Right after layer ``i``'s attention on a chunk: reduce it to its target."""
        self.store.write(cache, i, self.reduce(self.context(cache, i)))

    def compress_model(self, cache: Any) -> None:
        """After a chunk's forward pass, for methods that compress all layers at once (KVzip): every target layer
        is scored (and its state carried) after every chunk, and reduced once it holds more than its target."""
        method = self.method
        contexts = [self.context(cache, i) for i in self.targets]
        if not contexts:
            return
        self.store.prepare(method, contexts, cache)
        reduced = method.compress_layers(contexts) if any(_must_reduce(method, c) for c in contexts) else None
        for k, ctx in enumerate(contexts):
            self.store.write(cache, ctx.layer_idx, self.reduce(ctx, None if reduced is None else reduced[k]))

    def mask_padding(self, masks: CacheMasks, i: int, mask: Any, query: torch.Tensor, key: torch.Tensor) -> Any:
        """A managed layer's mask for a later chunk of a left-padded batch: the chunk's padding tokens are
        invisible and invalid from now on (a query that sees nothing at all sees itself, so SDPA gives no NaN)."""
        b, q, k = query.shape[0], query.shape[2], key.shape[2]
        new = self.token_valid[:, -q:]
        if bool(new.all()):
            return mask
        masks.drop_new(i, new, k)  # after mask_for: the stored entries and this chunk's
        if mask is None:
            mask = torch.ones(b, 1, q, k, dtype=torch.bool, device=key.device)
        visible = torch.cat([new.new_ones(b, k - q), new], dim=-1)[:, None, None, :]
        mask = mask & visible
        own = torch.cat([torch.zeros(q, k - q, dtype=torch.bool, device=key.device),
                         torch.eye(q, dtype=torch.bool, device=key.device)], dim=-1)
        return mask | (~mask.any(-1, keepdim=True) & own)


def entered_entries(entered: dict[int, Any], adapter: Any) -> dict[int, float]:
    """Per layer, the entries it would hold had nothing been evicted (mean over rows): what it took in
    (``entered``), at most ``window - 1`` on a sliding-window layer (what transformers' layers store);
    ``adapter``: the model's :class:`tokenzip.models.decoders.DecoderAdapter`."""
    window = adapter.sliding_window()
    out = {}
    for i in range(adapter.num_layers):
        taken = float(torch.as_tensor(entered.get(i, 0)).float().mean())
        out[i] = min(taken, window - 1) if window and adapter.is_sliding(i) else taken
    return out


def _keep_all(ctx: LayerContext) -> LayerResult:
    b, h, n = ctx.keys.shape[:3]
    valid = ctx.valid_per_head()
    indices = torch.arange(n, device=ctx.keys.device).expand(b, h, n)
    return LayerResult(ctx.keys, ctx.values, None if valid is None else valid.expand(b, h, n), indices=indices)


def _must_reduce(method: KVMethod, ctx: LayerContext) -> bool:
    """Whether any row holds more real entries than its target, or invalid entries to drop; a method choosing its
    ratio per context (``ratio="auto"``) decides after every chunk, unless it may remove nothing."""
    if ctx.token_valid is not None and not bool(ctx.token_valid.all()):
        return True
    if getattr(method, "auto", False):
        return not method.is_noop(ctx.n_tokens)
    return bool((method.keep_counts(ctx) < ctx.n_tokens).any())
