"""The KV runtime: what runs while a KV method is attached to a model.

It routes attention through tokenzip's SDPA function (``tokenzip.models.attachment``) to capture
the last prefill queries each method needs, detects the prefill (the forward that starts from an
empty cache), compresses each layer's cache right after that layer's attention (or after the whole
prefill for methods that need the whole model), and from then on builds each compressed layer's
attention mask from which entries it kept. Sliding-window layers of hybrid models (Gemma 3) are left
alone unless the method says ``compress_sliding=True``. Everything is removed on exit.

What the forward pass being watched does is one value, :attr:`KVRuntime.phase` (:mod:`tokenzip.kv.phases`:
prefill, decode, replay); a chunked prefill is a :class:`~tokenzip.kv.chunked.ChunkedPrefill` that owns its
state. The model's :class:`~tokenzip.models.attachment.Attachment` holds this runtime's attention handler and the
validity state it shares with a layers method.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from tokenzip.kv.attached import check_kv_model, one_kv_method
from tokenzip.kv.base import KVMethod, target_layers
from tokenzip.kv.cache import layer_at, layer_entries, layer_length, restore, snapshot, store
from tokenzip.kv.chunked import ChunkedPrefill, check_chunk_size
from tokenzip.kv.context import AttentionCallback, DecodeContext, LayerContext, LayerResult, ReplayContext
from tokenzip.kv.phases import Decode, Phase, Prefill, Replay
from tokenzip.models.attachment import Attachment, CacheMasks, attached, claimed
from tokenzip.models.calling import cache_kwargs, call_cache, output_cache
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.ops.attention import received_attention

__all__ = ["KVRuntime", "MadePrefill", "attach_kv", "target_layers"]


class MadePrefill(Protocol):
    """A prefill already made (:class:`tokenzip.kv.answer.Prefill`), as :meth:`KVRuntime.over_prefill` reads it."""

    model: Any
    tokenizer: Any
    captures: dict[int, dict[str, torch.Tensor]]
    input_ids: torch.Tensor
    memo: dict[Any, tuple[Any, float]]


class KVRuntime:
    """Captures, compression and masks for one model; use :meth:`attached` as a context manager.

    With ``method=None`` it only captures (the shared prefill of :func:`tokenzip.kv.prefill`):
    ``window`` last queries per layer, and the attention each key received when ``received``.
    ``chunk_size`` (default: the method's) prefills chunk by chunk, compressing between chunks
    (:mod:`tokenzip.kv.chunked`). ``tokenizer`` is for methods that tokenize an instruction (KVzip); ``memo``
    holds extra passes over one prefill shared by every method and ratio compressing it. To compress a prefill
    already made, use :meth:`over_prefill`.
    """

    def __init__(self, model: Any, method: KVMethod | None = None, window: int = 0, received: bool = False,
                 masks: CacheMasks | None = None, chunk_size: int | None = None, tokenizer: Any = None,
                 memo: dict[Any, tuple[Any, float]] | None = None) -> None:
        self.model = model
        self.adapter = DecoderAdapter(model)
        self.method = method
        self.window = max(window, method.query_window() if method else 0)
        self.want_received = received or bool(method and method.wants_received())
        self.given_masks = masks  # served caches bring their own; otherwise the model's shared state is used
        self.masks = masks or CacheMasks()
        self.targets = target_layers(self.adapter, bool(method and method.compress_sliding))
        self.captures: dict[int, dict[str, torch.Tensor]] = {}
        self.token_valid: torch.Tensor | None = None
        self.input_ids: torch.Tensor | None = None
        self.cache: Any = None
        self.tokenizer = tokenizer
        # extra passes over one prefill (KVzip's reconstruction), shared by every method and ratio compressing
        # it: key -> (result, seconds it took); ``charged_seconds`` adds the reused ones to the method's cost
        self.memo: dict[Any, tuple[Any, float]] = {} if memo is None else memo
        self.charged_seconds = 0.0
        self.seen = 0
        self.phase: Phase = Decode()
        self.chunk_size = chunk_size if chunk_size is not None else getattr(method, "chunk_size", None)
        if self.chunk_size is not None:
            check_chunk_size(self.chunk_size)
            if method is not None:
                method.check_chunks(self.chunk_size)
        self.chunked: ChunkedPrefill | None = None  # the last chunked prefill
        self.entered: dict[int, Any] = {}  # entries each layer took in during the last prefill, per row
        self.compress_seconds = 0.0  # time the last prefill spent compressing (between chunks, or after it)
        self.attachment: Attachment | None = None  # the model's, while attached

    @classmethod
    def over_prefill(cls, prefill: MadePrefill, method: KVMethod | None, masks: CacheMasks | None = None
                     ) -> KVRuntime:
        """A runtime that compresses ``prefill`` (a :class:`tokenzip.kv.answer.Prefill`) as if it had just run it:
        its captures, ids, length, tokenizer and memo."""
        runtime = cls(prefill.model, method, masks=masks, tokenizer=prefill.tokenizer, memo=prefill.memo)
        runtime.captures, runtime.input_ids = prefill.captures, prefill.input_ids
        runtime.seen = prefill.input_ids.shape[1]
        return runtime

    @property
    def replaying(self) -> bool:
        """Whether an extra pass over the prefill (KVzip's reconstruction) is running."""
        return isinstance(self.phase, Replay)

    @property
    def carried(self) -> dict[int, torch.Tensor]:
        """Per layer, the state the method carried with its kept entries through the last chunked prefill."""
        return self.chunked.carried if self.chunked is not None else {}

    # --- attachment ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def attached(self) -> Iterator[KVRuntime]:
        handlers = {m: self._on_attention for m in self.adapter.attention_modules}
        hooks = [self.adapter.decoder.register_forward_pre_hook(self._before_forward, with_kwargs=True),
                 self.adapter.decoder.register_forward_hook(self._after_forward, with_kwargs=True)]
        if self.method is not None:
            hooks += [m.register_forward_hook(self._after_attention, with_kwargs=True)
                      for m in self.adapter.attention_modules]
        try:
            with attached(self.model) as record, record.routed(handlers, self.given_masks) as masks:
                self.attachment, self.masks = record, masks
                try:
                    yield self
                finally:
                    record.chunk = None
                    self.attachment = None
        finally:
            for h in hooks:
                h.remove()

    def _read_chunk(self, chunk: Any) -> None:
        """Say which prefill chunk the model reads (None: none) to the stages attached to it."""
        if self.attachment is not None:
            self.attachment.chunk = chunk

    # --- hooks -----------------------------------------------------------------------------------
    def _before_forward(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if isinstance(self.phase, Replay):
            return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        q = (ids if ids is not None else embeds).shape[1]
        if self.chunked is not None and self.chunked.feeding:  # one of the first chunks of a chunked prefill
            self._begin_chunk(q)
            return None
        self._read_chunk(None)
        cache = call_cache(module, args, kwargs)
        if cache is not None and cache.get_seq_length() > 0:
            self.phase = Decode(q)
            return None
        self._begin_prefill(kwargs.get("attention_mask"), ids)
        if self.chunk_size and q > self.chunk_size:  # a prefill that fits one chunk is compressed as a whole
            return self._feed_chunks(module, args, kwargs)
        self.phase = Prefill(q)
        return None

    def _begin_prefill(self, mask: Any, ids: torch.Tensor | None) -> None:
        """A forward pass from an empty cache: forget the last prefill."""
        self.captures.clear()
        self.seen = 0
        self.masks.clear()
        self.token_valid = None
        if isinstance(mask, torch.Tensor) and mask.ndim == 2 and not bool(mask.all()):
            self.token_valid = mask.bool()
        self.input_ids = ids
        self.compress_seconds = 0.0
        self.entered = {}
        self.chunked = None

    def _feed_chunks(self, decoder: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Run a long prefill's first chunks from the pre-hook; the arguments of the caller's pass (the last chunk)."""
        self.chunked = ChunkedPrefill(self, self.method, self.chunk_size, self.targets, self.entered)
        try:
            last = self.chunked.feed(decoder, self.model, args, kwargs)
        except BaseException:
            self.chunked = None
            self._read_chunk(None)
            self.phase = Decode()
            raise
        ids = last.get("input_ids")
        self._begin_chunk((ids if ids is not None else last["inputs_embeds"]).shape[1])
        return (), last

    def _begin_chunk(self, q: int) -> None:
        """Start a chunk of ``q`` tokens: per-chunk captures, the validity and ids of the chunked prefill's chunk."""
        chunk = self.chunked.begin(q)
        self._read_chunk(chunk)
        self.captures.clear()
        self.token_valid, self.input_ids = self.chunked.token_valid, self.chunked.input_ids
        self.phase = Prefill(q, chunk)

    def _after_forward(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        phase = self.phase
        if isinstance(phase, Replay):
            return
        self.seen += phase.q
        if isinstance(phase, Prefill):
            self._read_chunk(None)  # a chunk's extra passes (KVzip's reconstruction) are not prefill chunks
            self.cache = output_cache(output) or call_cache(module, args, kwargs)
            if self.method is not None and self.method.needs_whole_model() and self.cache is not None:
                start = time.perf_counter()
                if phase.chunk is not None:
                    self.chunked.compress_model(self.cache)
                else:
                    self.compress_all(self.cache)
                self.compress_seconds += time.perf_counter() - start
            if phase.chunk is not None:
                self.chunked.finish()
        self.phase = Decode()

    def _on_attention(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: Any, kwargs: dict) -> Any:
        i = module.layer_idx
        phase = self.phase
        if isinstance(phase, Replay):
            phase.on_attention(module, query, key)
        elif isinstance(phase, Prefill):
            self._enter(i, query.shape[2], phase.q)
            capture = {}
            if self.window:
                capture["queries"] = query[:, :, -self.window :].detach()
            if self.want_received:
                capture["received"] = received_attention(query, key, module.scaling)
            self.captures[i] = capture
        elif self.method is not None and self.method.decode_window and i in self.targets:
            previous = self.captures.setdefault(i, {}).get("queries")
            queries = query.detach() if previous is None else torch.cat([previous, query.detach()], dim=2)
            self.captures[i]["queries"] = queries[:, :, -self.method.decode_window :]
        # a prefill's managed layers are the layers stage's, except a chunked prefill's, which the kv method reduced
        chunk = phase.chunk if isinstance(phase, Prefill) else None
        if chunk is not None and chunk.owns(i):  # pruned inside the model in this chunk: the layers stage's mask
            return mask
        if self.masks.managed(i) and phase.masks_stored():
            mask = self.masks.mask_for(i, query, key)
            if chunk is not None and self.token_valid is not None:
                return self.chunked.mask_padding(self.masks, i, mask, query, key)
        return mask

    def _enter(self, i: int, q: int, fed: int) -> None:
        """Layer ``i``'s attention on a prefill: its ``q`` new entries (the tokens ``fed``, or fewer where a layers
        method pruned them inside the model) join what it has taken in so far (per row, real entries only)."""
        new: Any = q
        if self.token_valid is not None and q == fed:
            new = self.token_valid[:, -q:].sum(-1).long()
        self.entered[i] = self.entered.get(i, 0) + new

    def _after_attention(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        i = module.layer_idx
        cache = call_cache(module, args, kwargs)
        phase = self.phase
        if isinstance(phase, Replay) or i not in self.targets or cache is None:
            return
        if isinstance(phase, Decode):
            if self.method.acts_on_decode():
                self.method.on_decode(self.decode_context(cache, i))
            return
        if self.method.needs_whole_model():
            return
        start = time.perf_counter()
        if phase.chunk is not None:
            self.chunked.compress_layer(cache, i)
        else:
            ctx = self.context(cache, i)
            if self.method.is_noop(ctx.n_tokens):
                return
            self.write(cache, i, self.method.compress_layer(ctx))
        self.captures.pop(i, None)
        self.compress_seconds += time.perf_counter() - start

    # --- compression -----------------------------------------------------------------------------
    def context(self, cache: Any, i: int) -> LayerContext:
        """The :class:`LayerContext` of layer ``i`` from its stored entries and this prefill's captures."""
        layer = layer_at(cache, i)
        stored = layer_length(layer)
        keys, values = layer_entries(layer)
        capture = self.captures.get(i, {})
        valid = self.token_valid[:, -stored:] if self.token_valid is not None else None
        if self.masks.managed(i):  # already compressed once (decoding): its own validity, per head
            managed = self.masks.valid.get(i)
            valid = None if managed is None else managed[..., -stored:]
        received = capture.get("received")
        module = self.adapter.attention_modules[i]
        return LayerContext(
            layer_idx=i, num_layers=self.adapter.num_layers, keys=keys, values=values,
            queries=capture.get("queries"), token_valid=valid, scaling=module.scaling,
            is_sliding=self.adapter.is_sliding(i), adapter=self.adapter,
            received=received[..., -stored:] if received is not None else None,
        )

    def write(self, cache: Any, i: int, result: LayerResult) -> None:
        """Store a compressed layer in the cache and take over its attention mask."""
        self.masks.manage(i, store(cache, i, result.keys, result.values, result.layer, result.valid))

    def compress_all(self, cache: Any, method: KVMethod | None = None) -> None:
        """Compress every target layer of ``cache`` at once (methods that need the whole model)."""
        method = method or self.method
        self.cache = cache
        contexts = [self.context(cache, i) for i in self.targets]
        if not contexts or method.is_noop(max(c.n_tokens for c in contexts)):
            return
        self.prepare(method, contexts, cache)
        for ctx, result in zip(contexts, method.compress_layers(contexts)):
            self.write(cache, ctx.layer_idx, result)

    def prepare(self, method: KVMethod, contexts: list[LayerContext], cache: Any) -> None:
        """Let ``method`` run its extra passes over this prefill (:meth:`KVMethod.prepare`) before it scores
        ``contexts``; the seconds of memoized passes it reused are added to ``charged_seconds``."""
        replay = self.replay_context(cache)
        method.prepare(replay, contexts)
        self.charged_seconds += replay.charged_seconds

    def replay_context(self, cache: Any) -> ReplayContext:
        """What :meth:`KVMethod.prepare` sees of this prefill: its ids, a replay pass over ``cache``, the memo."""
        return ReplayContext(input_ids=self.input_ids, seen=self.seen,
                             bos_token_id=getattr(self.adapter.config, "bos_token_id", None),
                             tokenizer=self.tokenizer, replay=functools.partial(self.replay, cache), memo=self.memo)

    def decode_context(self, cache: Any, i: int) -> DecodeContext:
        """What :meth:`KVMethod.on_decode` sees of layer ``i`` after a decoding step's attention."""
        return DecodeContext(layer_idx=i, seen=self.seen, stored=layer_length(layer_at(cache, i)),
                             layer=functools.partial(self.context, cache, i),
                             write=functools.partial(self.write, cache, i))

    @torch.no_grad()
    def replay(self, cache: Any, input_ids: torch.Tensor, on_attention: AttentionCallback) -> None:
        """Run extra tokens after the prefill through the decoder, calling ``on_attention(module, q, k)``
        in every layer, then put the cache back as it was (KVzip's reconstruction pass)."""
        saved, saved_masks = snapshot(cache), self.masks.snapshot()
        outer = self.phase
        self.phase = Replay(outer, on_attention)
        try:
            positions = (self.seen + torch.arange(input_ids.shape[1], device=input_ids.device)).unsqueeze(0)
            mask = None
            if self.token_valid is not None:
                mask = torch.cat([self.token_valid, self.token_valid.new_ones(input_ids.shape)], dim=-1).long()
            self.adapter.decoder(input_ids=input_ids, position_ids=positions, attention_mask=mask, use_cache=True,
                                 **cache_kwargs(self.adapter.decoder, cache))
        finally:
            self.phase = outer
            restore(cache, saved)
            self.masks.restore(saved_masks)


@contextlib.contextmanager
def attach_kv(model: Any, method: KVMethod, tokenizer: Any = None) -> Iterator[KVRuntime]:
    """``with tz.compress(model, method)``: compress the cache after prefill, inside the block (one kv method per
    model: a second one, nested, is refused before any forward pass)."""
    check_kv_model(model)
    runtime = KVRuntime(model, method, tokenizer=tokenizer)
    with claimed(model, "kv", runtime, one_kv_method(method)), runtime.attached():
        yield runtime
