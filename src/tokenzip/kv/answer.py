"""Query-agnostic cache reuse: prefill a context once, compress it, answer many questions from it
(:func:`tokenzip.kv.answer`, whose loop is in :mod:`tokenzip.kv.questions`).

This is the protocol kvpress's pipeline uses and users of cached contexts need: the context is
prefilled and compressed without seeing the question; each question is then fed after it with
position ids that continue from the *original* context length, answered greedily, and the cache is
restored before the next question. ``query_aware=True`` appends the question before compression
instead (one prefill per question).

Because every post-prefill method depends only on what the uncompressed prefill computed, one
:class:`Prefill` can serve many methods and ratios (:meth:`Prefill.compress` leaves it untouched).
A chunked prefill (``chunk_size=``, :mod:`tokenzip.kv.chunked`) compresses while it reads the context, so
it serves the one method it was given.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.attached import check_kv_model, check_not_kv_attached
from tokenzip.kv.base import KVMethod, same_method
from tokenzip.kv.cache import cache_bytes, copy_cache, layer_at, layer_length, restore, snapshot
from tokenzip.kv.chunked import check_chunk_size, entered_entries
from tokenzip.kv.runtime import KVRuntime, target_layers
from tokenzip.method import get_method
from tokenzip.models.attachment import CacheMasks
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.models.chunking import prefill_in_chunks
from tokenzip.models.decoders import DecoderAdapter


@dataclass
class Prefill:
    """An uncompressed prefill of one context, with the captures methods need. Reusable.

    After a chunked prefill (``chunk_size``), ``cache`` is already compressed by ``method``; ``seconds``
    then include the compression between chunks, of which ``compress_seconds`` is the part.
    """

    model: Any
    tokenizer: Any
    cache: Any
    captures: dict[int, dict[str, torch.Tensor]]
    input_ids: torch.Tensor
    window: int
    received: bool
    seconds: float
    bytes: int
    memo: dict[Any, tuple[Any, float]] = field(default_factory=dict)  # extra passes shared by compress() calls
    masks: Any = None  # validity of layers pruned inside the model during this prefill (a layers method)
    method: KVMethod | None = None  # the method that compressed a chunked prefill
    chunk_size: int | None = None
    compress_seconds: float = 0.0
    # a chunked prefill: per layer, the entries it took in (what it would hold had the kv method evicted
    # nothing; fewer than the tokens where a layers method pruned them), the counts a ratio is measured against
    entered: dict[int, float] | None = None

    @property
    def n_tokens(self) -> int:
        return self.input_ids.shape[1]

    def compress(self, method: KVMethod | str | None) -> CompressedCache:
        """Apply ``method`` to a copy of this prefill's cache (the prefill is left untouched); a chunked prefill
        gives (a copy of) the cache it compressed while prefilling, for its own method only."""
        method = _as_method(method)
        if self.chunk_size is not None:
            return self._compressed_while_prefilling(method)
        cache = copy_cache(self.cache)
        masks = CacheMasks()
        if self.masks is not None:
            masks.restore(self.masks)
        start, reused_seconds = time.perf_counter(), 0.0
        if method is not None:
            if method.query_window() > self.window or (method.wants_received() and not self.received):
                raise TokenzipError(
                    f"{method.name} needs the last {method.query_window()} queries"
                    f"{' and received attention' if method.wants_received() else ''}; this prefill captured "
                    f"{self.window}: pass it in prefill(..., methods=[...])"
                )
            runtime = KVRuntime.over_prefill(self, method, masks)
            with torch.no_grad(), runtime.attached():
                runtime.compress_all(cache)
            reused_seconds = runtime.charged_seconds  # reused work is charged as if this method had done it alone
        seconds = time.perf_counter() - start + reused_seconds
        counts = self._kept(cache, masks, bool(method and method.compress_sliding))
        return CompressedCache(self.model, cache, masks, self.n_tokens, method, seconds, counts)

    def _compressed_while_prefilling(self, method: KVMethod | None) -> CompressedCache:
        if not same_method(method, self.method):
            given = self.method.describe() if self.method else "no method"
            raise TokenzipError(f"this prefill was compressed chunk by chunk by {given}; it cannot give "
                                f"{method.describe() if method else 'the uncompressed cache'}: prefill again")
        masks = CacheMasks()
        if self.masks is not None:
            masks.restore(self.masks)
        cache = copy_cache(self.cache)
        targets = target_layers(self.adapter, bool(method and method.compress_sliding))
        before = after = 0.0
        for i in targets:
            valid = masks.valid.get(i)
            stored = layer_length(layer_at(cache, i))
            after += stored if valid is None else float(valid.float().sum(-1).mean())
            before += self.entered[i] if self.entered else self.n_tokens
        counts = {"entries_before": before, "entries_after": after}
        return CompressedCache(self.model, cache, masks, self.n_tokens, method, self.compress_seconds, counts)

    def _kept(self, cache: Any, masks: CacheMasks, compress_sliding: bool) -> dict[str, float]:
        before = after = 0
        for i in target_layers(self.adapter, compress_sliding):
            stored_before = layer_length(layer_at(self.cache, i))
            valid = masks.valid.get(i)
            layer = layer_at(cache, i)
            stored = layer_length(layer)
            before += stored_before
            after += stored if valid is None else float(valid.float().sum(-1).mean())
        return {"entries_before": before, "entries_after": after}

    @property
    def adapter(self) -> DecoderAdapter:
        return DecoderAdapter(self.model)


@dataclass
class CompressedCache:
    """A compressed cache and the masks that go with it, ready to answer questions."""

    model: Any
    cache: Any
    masks: CacheMasks
    seen: int  # original context length: question positions continue from here
    method: KVMethod | None
    compress_seconds: float
    counts: dict[str, float] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return cache_bytes(self.cache)

    @contextlib.contextmanager
    def serving(self) -> Iterator[Any]:
        """Feed tokens after the compressed context inside the block (masks and routing attached); the cache
        and its masks are put back as they were on exit, so the next question sees the same context."""
        runtime = KVRuntime(self.model, None, masks=self.masks)
        saved_layers, saved_masks = snapshot(self.cache), self.masks.snapshot()
        try:
            with runtime.attached():
                yield self.cache
        finally:
            restore(self.cache, saved_layers)
            self.masks.restore(saved_masks)

    def positions(self, start: int, n: int, device: Any) -> torch.Tensor:
        """Position ids ``(1, n)`` for tokens fed ``start`` tokens after the original context."""
        return (self.seen + start + torch.arange(n, device=device)).unsqueeze(0)

    @property
    def achieved_ratio(self) -> float:
        """Fraction of entries removed over the compressed layers, counting only valid entries."""
        before = self.counts.get("entries_before", 0)
        return 0.0 if not before else 1.0 - self.counts["entries_after"] / before


@dataclass
class KVAnswer:
    """One answer and what it cost (after a chunked prefill, ``prefill_seconds`` include the compression
    between chunks, ``compress_seconds`` of them)."""

    question: str
    text: str
    tokens_in: int
    achieved_ratio: float
    cache_bytes_before: int
    cache_bytes: int
    prefill_seconds: float
    compress_seconds: float
    decode_seconds: float
    new_tokens: int
    method: str = "none"
    chunk_size: int | None = None  # compressed while prefilling in chunks (cache_bytes_before: what was held then)

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


def _as_method(method: KVMethod | str | None) -> KVMethod | None:
    if isinstance(method, str):
        method = get_method(method, stage="kv")
    if method is not None and not isinstance(method, KVMethod):
        raise TokenzipError(f"expected a kv method (tz.get_method(name, stage='kv')), got {method!r}")
    return method


def _encode(tok: Any, text: str | torch.Tensor, special: bool, device: Any) -> torch.Tensor:
    if isinstance(text, torch.Tensor):
        return text.to(device).view(1, -1)
    if not isinstance(text, str):
        raise TokenzipError(f"expected text or token ids, got {type(text).__name__}")
    ids = tok(text, return_tensors="pt", add_special_tokens=special).input_ids
    return ids.to(device)


def one_chunk_size(chunk_size: int | None, methods: Sequence[KVMethod]) -> int | None:
    """The chunk size of a prefill: ``chunk_size`` or the methods' own, which must not say otherwise."""
    own = {m.chunk_size for m in methods if m.chunk_size is not None}
    if chunk_size is not None and own - {chunk_size}:
        raise TokenzipError(f"chunk_size={chunk_size} was given, and the method's own chunk_size is "
                            f"{', '.join(map(str, sorted(own)))}: give it once (either one)")
    return chunk_size if chunk_size is not None else next(iter(sorted(own)), None)


def check_max_new_tokens(max_new_tokens: Any) -> None:
    """New tokens to generate: an integer >= 1."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise TokenzipError(f"max_new_tokens is the number of tokens to generate, an integer >= 1; got "
                            f"{max_new_tokens!r}")


def check_context(context: Any, n_tokens: int | None = None) -> None:
    """A context to answer from: text that is not empty (or token ids), of at least one token once tokenized
    (``n_tokens``, when known)."""
    if (isinstance(context, str) and not context.strip()) or n_tokens == 0:
        raise TokenzipError("the context is empty: give the text the questions are about")


def check_prefill(methods: Sequence[KVMethod], chunk_size: int | None = None) -> int | None:
    """What every engine's prefill refuses before any work; returns its chunk size (``chunk_size`` or the methods'
    own, :func:`one_chunk_size`). A chunked prefill takes a whole number of tokens per chunk, one method at most,
    and a method that can compress between chunks."""
    chunk_size = one_chunk_size(chunk_size, methods)
    if chunk_size is None:
        return None
    check_chunk_size(chunk_size)
    if len(methods) > 1:
        raise TokenzipError(f"a chunked prefill compresses while it reads the context, with one method; got "
                            f"{len(methods)} ({', '.join(m.name for m in methods)}): prefill once per method")
    if methods:
        methods[0].check_chunks(chunk_size)
    return chunk_size


@torch.no_grad()
def prefill(model: Any, tok: Any, context: str | torch.Tensor, methods: Sequence[KVMethod | str] = (),
            window: int = 0, received: bool = False, chunk_size: int | None = None) -> Prefill:
    """Prefill ``context`` without compression, keeping what ``methods`` will need to compress it.

    With ``chunk_size`` (or a method's own ``chunk_size``) the context is read ``chunk_size`` tokens at a
    time and compressed by the one method given between chunks, so no compressed layer ever holds more than
    its budget + one chunk (:mod:`tokenzip.kv.chunked`); without a method, the chunks are only read in turn.
    """
    check_kv_model(model)
    check_not_kv_attached(model, "tz.kv.prefill")
    methods = [_as_method(m) for m in methods]
    live = [m for m in methods if m is not None]
    chunk_size = check_prefill(live, chunk_size)
    window = max([window] + [m.query_window() for m in methods if m is not None])
    received = received or any(m is not None and m.wants_received() for m in methods)
    device = next(model.parameters()).device
    ids = _encode(tok, context, True, device)
    check_context(context, ids.shape[1])
    method = live[0] if chunk_size is not None and live else None
    if chunk_size is not None:
        runtime = KVRuntime(model, method, chunk_size=chunk_size, tokenizer=tok)
    else:
        runtime = KVRuntime(model, None, window=window, received=received)
    limit = runtime.adapter.max_positions
    if limit and ids.shape[1] > limit:
        raise TokenzipError(
            f"the context has {ids.shape[1]} tokens but {type(model).__name__} allows {limit} positions; "
            "shorten it (or compress it first with tz.prompt.compress)"
        )
    cache = new_cache(model)
    start = time.perf_counter()
    with runtime.attached():
        runtime.adapter.decoder(input_ids=ids, **cache_kwargs(runtime.adapter.decoder, cache), use_cache=True)
    seconds = time.perf_counter() - start
    return Prefill(model, tok, cache, dict(runtime.captures), ids, window, received, seconds, cache_bytes(cache),
                   masks=runtime.masks.snapshot(), method=method, chunk_size=chunk_size,
                   compress_seconds=runtime.compress_seconds,
                   entered=entered_entries(runtime.entered, runtime.adapter) if chunk_size is not None else None)


def plain_chunked_prefill(model: Any, tok: Any, context: str | torch.Tensor, chunk_size: int) -> Prefill:
    """Prefill ``context`` ``chunk_size`` tokens at a time through transformers alone, nothing compressed.

    The baseline of a chunked prefill (``benchmarks/long-context.md``): the same chunks as
    ``prefill(..., chunk_size=...)``, fed in turn to transformers' own dynamic cache with nothing of tokenzip
    attached (:func:`tokenzip.models.chunking.prefill_in_chunks`), so what chunking alone saves is measured
    apart from what compression adds. The result answers questions like any prefill (``compress(None)``).
    """
    check_kv_model(model)
    check_not_kv_attached(model, "tz.kv.plain_chunked_prefill")
    check_chunk_size(chunk_size)
    check_context(context)
    ids = _encode(tok, context, True, next(model.parameters()).device)
    check_context(context, ids.shape[1])
    limit = DecoderAdapter(model).max_positions
    if limit and ids.shape[1] > limit:
        raise TokenzipError(f"the context has {ids.shape[1]} tokens but {type(model).__name__} allows {limit} "
                            "positions; shorten it (or compress it first with tz.prompt.compress)")
    start = time.perf_counter()
    cache = prefill_in_chunks(model, ids, chunk_size)
    seconds = time.perf_counter() - start
    return Prefill(model, tok, cache, {}, ids, 0, False, seconds, cache_bytes(cache), chunk_size=chunk_size)


@torch.no_grad()
def answer_from(model: Any, tok: Any, compressed: CompressedCache, question: str | torch.Tensor,
                max_new_tokens: int = 32,
                answer_prefix: str = "") -> tuple[str, int, float]:
    """Greedy answer to ``question`` from a compressed cache, restored afterwards.

    ``question`` may also be token ids. Returns ``(text, new_tokens, decode_seconds)``; decode time
    covers the question tokens and generation.
    """
    check_max_new_tokens(max_new_tokens)
    device = next(model.parameters()).device
    if isinstance(question, torch.Tensor):
        ids = question.to(device).view(1, -1)
    else:
        ids = _encode(tok, question + answer_prefix, False, device)
    check_room(model, compressed.seen, ids.shape[1], max_new_tokens)
    start = time.perf_counter()
    out = list(answer_tokens(model, compressed, ids, max_new_tokens))
    return tok.decode(out, skip_special_tokens=True), len(out), time.perf_counter() - start


def check_room(model: Any, seen: int, n_question: int, max_new_tokens: int) -> None:
    """A question of ``n_question`` tokens (at least one) fed after a context of ``seen``, and ``max_new_tokens``
    after it, within the model's positions (:attr:`DecoderAdapter.max_positions`)."""
    if n_question == 0:
        raise TokenzipError("the question is empty")
    limit = DecoderAdapter(model).max_positions
    if limit and seen + n_question + max_new_tokens > limit:
        raise TokenzipError(f"context + question + {max_new_tokens} new tokens exceed the model's {limit} positions")


def eos_ids(model: Any) -> set[int]:
    """The token ids that end generation for ``model`` (its generation config's ``eos_token_id``)."""
    eos = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


@torch.no_grad()
def answer_tokens(model: Any, compressed: CompressedCache, ids: torch.Tensor, max_new_tokens: int,
                  stop: set[int] | None = None) -> Iterator[int]:
    """Greedy token ids after feeding ``ids`` ``(1, n)`` to a compressed cache, yielded one at a time.

    Stops at ``stop`` (default: the model's end-of-sequence ids, not yielded) or after ``max_new_tokens``.
    The cache is restored when the generator finishes or is closed (e.g. a client went away).
    """
    stop = eos_ids(model) if stop is None else stop
    with compressed.serving() as cache:
        fed = 0
        for _ in range(max_new_tokens):
            positions = compressed.positions(fed, ids.shape[1], ids.device)
            logits = model(input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=1,
                           **cache_kwargs(model, cache)).logits
            fed += ids.shape[1]
            token = int(logits[0, -1].argmax())
            if token in stop:
                return
            yield token
            ids = torch.tensor([[token]], device=ids.device)
