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
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.base import LayerContext, LayerResult
from tokenzip.models.calling import cache_kwargs, call_cache, new_cache
from tokenzip.models.chunking import chunk_sizes, end_chunk, start_chunk

SEQUENCE_INPUTS = ("input_ids", "inputs_embeds", "position_ids")  # sliced to each chunk along the last token axis


@dataclass
class ChunkState:
    """Where a chunked prefill stands."""

    valid: torch.Tensor | None  # (B, N) token validity of the whole input (None: no padding)
    ids: torch.Tensor | None  # (B, N) the whole input's token ids (None for embeddings)
    total: int = 0  # tokens of the whole input
    feeding: bool = True  # inside the first chunks (run from the pre-hook), not the caller's last one
    start: int = 0  # tokens before the current chunk
    end: int = 0  # tokens up to the end of the current chunk


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


def feed(runtime: Any, decoder: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Run all chunks but the last of a long prefill through ``decoder``; the arguments of the last one.

    Called from the decoder's forward pre-hook when a prefill (a forward pass from an empty cache) is
    longer than ``runtime.chunk_size``; the caller's forward pass then computes the last chunk.
    """
    kwargs = _as_kwargs(decoder, args, kwargs)
    mask = kwargs.get("attention_mask")
    if mask is not None and not (isinstance(mask, torch.Tensor) and mask.ndim == 2):
        raise TokenzipError("a chunked prefill needs a 2-D attention mask (B, N) or none; got a prepared mask")
    if call_cache(decoder, (), kwargs) is None:
        kwargs.update(cache_kwargs(decoder, new_cache(runtime.model)))
    kwargs["use_cache"] = True
    ids = kwargs.get("input_ids")
    n = (ids if ids is not None else kwargs["inputs_embeds"]).shape[1]
    valid = mask.bool() if isinstance(mask, torch.Tensor) and not bool(mask.all()) else None
    runtime.chunks = state = ChunkState(valid=valid, ids=ids, total=n)
    runtime.compress_seconds = 0.0
    runtime.carried = {}
    runtime.entered = {}
    sizes = chunk_sizes(n, runtime.chunk_size)
    try:
        for size in sizes[:-1]:
            decoder(**_slice(kwargs, state.start, state.start + size))
    except BaseException:
        runtime.chunks = None
        end_chunk(runtime.model)
        raise
    state.feeding = False
    last = _slice(kwargs, state.start, n)
    begin(runtime, n - state.start)
    return (), last


def begin(runtime: Any, q: int) -> None:
    """Start a chunk of ``q`` tokens: per-chunk captures, the validity of the tokens so far."""
    state = runtime.chunks
    state.end = state.start + q
    start_chunk(runtime.model, state.start, state.end, state.total)
    runtime.prefilling = True
    runtime.captures.clear()
    runtime.token_valid = None if state.valid is None else state.valid[:, : state.end]
    runtime.input_ids = None if state.ids is None else state.ids[:, state.start : state.end]
    runtime._q = q


def finish(state: ChunkState) -> ChunkState | None:
    """After a chunk's forward pass: the next chunk starts where this one ended (None after the last)."""
    state.start = state.end
    return state if state.feeding else None


def enter(runtime: Any, i: int, q: int) -> None:
    """Layer ``i``'s attention on a chunk: its ``q`` new entries (the chunk's tokens, or fewer where a layers
    method pruned them inside the model) join what it has taken in so far (per row, real entries only)."""
    new: Any = q
    if runtime.token_valid is not None and q == runtime._q:
        new = runtime.token_valid[:, -q:].sum(-1).long()
    runtime.entered[i] = runtime.entered.get(i, 0) + new


def _seen(runtime: Any, ctx: LayerContext) -> torch.Tensor:
    """Entries layer ``ctx.layer_idx`` has taken in so far per row: the tokens seen, or fewer where a layers method
    pruned them (a ratio then keeps its share of what the layer was given, as after a whole prefill)."""
    seen = runtime.entered.get(ctx.layer_idx, runtime.chunks.end)
    return torch.as_tensor(seen, device=ctx.keys.device).long().expand(ctx.keys.shape[0]).clone()


def entered_entries(runtime: Any) -> dict[int, float]:
    """Per layer, the entries it would hold had nothing been evicted (mean over rows): what it took in, at most
    ``window - 1`` on a sliding-window layer (what transformers' layers store)."""
    window = runtime.adapter.sliding_window()
    out = {}
    for i in range(runtime.adapter.num_layers):
        taken = float(torch.as_tensor(runtime.entered.get(i, 0)).float().mean())
        out[i] = min(taken, window - 1) if window and runtime.adapter.is_sliding(i) else taken
    return out


def context(runtime: Any, cache: Any, i: int) -> LayerContext:
    """Layer ``i``'s context after a chunk: kept entries plus the chunk's, tokens seen, the carried state."""
    ctx = runtime.context(cache, i)
    carried = runtime.carried.get(i)
    if carried is not None:  # the new chunk's entries have carried nothing yet
        carried = carried.expand(ctx.keys.shape[0], -1, -1)
        fresh = carried.new_zeros(*carried.shape[:2], ctx.n_tokens - carried.shape[-1])
        carried = torch.cat([carried, fresh], dim=-1)
    return dataclasses.replace(ctx, seen=_seen(runtime, ctx), carried=carried)


def _keep_all(ctx: LayerContext) -> LayerResult:
    b, h, n = ctx.keys.shape[:3]
    valid = ctx.valid_per_head()
    indices = torch.arange(n, device=ctx.keys.device).expand(b, h, n)
    return LayerResult(ctx.keys, ctx.values, None if valid is None else valid.expand(b, h, n), indices=indices)


def _must_reduce(method: Any, ctx: LayerContext) -> bool:
    """Whether any row holds more real entries than its target, or invalid entries to drop; a method choosing its
    ratio per context (``ratio="auto"``) decides after every chunk, unless it may remove nothing."""
    if ctx.token_valid is not None and not bool(ctx.token_valid.all()):
        return True
    if getattr(method, "auto", False):
        return not method.is_noop(ctx.n_tokens)
    return bool((method.keep_counts(ctx) < ctx.n_tokens).any())


def reduce(runtime: Any, ctx: LayerContext, result: LayerResult | None = None) -> LayerResult:
    """Compress one layer's context to its target (or keep it whole when under it) and carry the method's
    per-entry state along with the kept entries."""
    method = runtime.method
    if result is None:
        result = method.compress_layer(ctx) if _must_reduce(method, ctx) else _keep_all(ctx)
    state = method.carry(ctx)
    if state is not None:
        if result.indices is None:
            raise TypeError(f"{method.name} carries state between chunks but its compress_layer returned no indices")
        state = state.expand(*result.indices.shape[:2], state.shape[-1])
        runtime.carried[ctx.layer_idx] = state.gather(-1, result.indices)
    return result


def compress_layer(runtime: Any, cache: Any, i: int) -> None:
    """Right after layer ``i``'s attention on a chunk: reduce it to its target."""
    start = time.perf_counter()
    ctx = context(runtime, cache, i)
    runtime.write(cache, i, reduce(runtime, ctx))
    runtime.captures.pop(i, None)
    runtime.compress_seconds += time.perf_counter() - start


def compress_model(runtime: Any, cache: Any) -> None:
    """After a chunk's forward pass, for methods that compress all layers at once (KVzip): every target layer
    is scored (and its state carried) after every chunk, and reduced once it holds more than its target."""
    start = time.perf_counter()
    method = runtime.method
    contexts = [context(runtime, cache, i) for i in runtime.targets]
    if contexts:
        runtime.prepare(method, contexts, cache)
        reduced = method.compress_model(contexts) if any(_must_reduce(method, c) for c in contexts) else None
        for k, ctx in enumerate(contexts):
            runtime.write(cache, ctx.layer_idx, reduce(runtime, ctx, None if reduced is None else reduced[k]))
    runtime.compress_seconds += time.perf_counter() - start


def mask_padding(runtime: Any, i: int, mask: Any, query: torch.Tensor, key: torch.Tensor) -> Any:
    """A managed layer's mask for a later chunk of a left-padded batch: the chunk's padding tokens are
    invisible and invalid from now on (a query that sees nothing at all sees itself, so SDPA gives no NaN)."""
    b, q, k = query.shape[0], query.shape[2], key.shape[2]
    new = runtime.token_valid[:, -q:]
    if bool(new.all()):
        return mask
    valid = runtime.masks.valid.get(i)  # after mask_for: the stored entries and this chunk's
    valid = new.new_ones(b, 1, k) if valid is None else valid
    runtime.masks.valid[i] = torch.cat([valid[..., :-q], valid[..., -q:] & new[:, None, :]], dim=-1)
    if mask is None:
        mask = torch.ones(b, 1, q, k, dtype=torch.bool, device=key.device)
    visible = torch.cat([new.new_ones(b, k - q), new], dim=-1)[:, None, None, :]
    mask = mask & visible
    own = torch.cat([torch.zeros(q, k - q, dtype=torch.bool, device=key.device),
                     torch.eye(q, dtype=torch.bool, device=key.device)], dim=-1)
    return mask | (~mask.any(-1, keepdim=True) & own)
