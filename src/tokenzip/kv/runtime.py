"""The KV runtime: what runs while a KV method is attached to a model.

It routes attention through tokenzip's SDPA function (``tokenzip.models.attention``) to capture
the last prefill queries each method needs, detects the prefill (the forward that starts from an
empty cache), compresses each layer's cache right after that layer's attention (or after the whole
prefill for methods that need the whole model), and from then on builds each compressed layer's
attention mask from which entries it kept. Sliding-window layers of hybrid models (Gemma 3) are left
alone unless the method says ``compress_sliding=True``. Everything is removed on exit.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from tokenzip.kv import chunked
from tokenzip.kv.attached import kv_attachment
from tokenzip.kv.base import KVMethod, LayerContext, LayerResult, target_layers
from tokenzip.kv.cache import layer_at, layer_entries, layer_length, restore, snapshot, store
from tokenzip.kv.context import DecodeContext, ReplayContext
from tokenzip.models.attention import CacheMasks, route_attention
from tokenzip.models.calling import cache_kwargs, call_cache, output_cache
from tokenzip.models.chunking import end_chunk, reading
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.ops.attention import received_attention

if TYPE_CHECKING:
    from tokenzip.kv.answer import Prefill


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
        self.extra_handlers: dict[int, Callable] = {}
        self.token_valid: torch.Tensor | None = None
        self.input_ids: torch.Tensor | None = None
        self.cache: Any = None
        self.tokenizer = tokenizer
        # extra passes over one prefill (KVzip's reconstruction), shared by every method and ratio compressing
        # it: key -> (result, seconds it took); ``charged_seconds`` adds the reused ones to the method's cost
        self.memo: dict[Any, tuple[Any, float]] = {} if memo is None else memo
        self.charged_seconds = 0.0
        self.seen = 0
        self.prefilling = False
        self.replaying = False
        self.compressed = False
        self.chunk_size = chunk_size if chunk_size is not None else getattr(method, "chunk_size", None)
        if self.chunk_size is not None:
            chunked.check_chunk_size(self.chunk_size)
            if method is not None:
                method.check_chunks(self.chunk_size)
        self.chunks: chunked.ChunkState | None = None  # set during a chunked prefill
        self.carried: dict[int, torch.Tensor] = {}  # per-entry state methods carry from chunk to chunk
        self.entered: dict[int, Any] = {}  # entries each layer took in during the last prefill, per row
        self.compress_seconds = 0.0  # time the last prefill spent compressing (between chunks, or after it)

    @classmethod
    def over_prefill(cls, prefill: Prefill, method: KVMethod | None, masks: CacheMasks | None = None) -> KVRuntime:
        """A runtime that compresses ``prefill`` (a :class:`tokenzip.kv.answer.Prefill`) as if it had just run it:
        its captures, ids, length, tokenizer and memo."""
        runtime = cls(prefill.model, method, masks=masks, tokenizer=prefill.tokenizer, memo=prefill.memo)
        runtime.captures, runtime.input_ids, runtime.seen = prefill.captures, prefill.input_ids, prefill.n_tokens
        return runtime

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
            with route_attention(self.model, handlers, self.given_masks) as masks:
                self.masks = masks
                yield self
        finally:
            end_chunk(self.model)
            for h in hooks:
                h.remove()

    # --- hooks -----------------------------------------------------------------------------------
    def _before_forward(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.replaying:
            return None
        cache = call_cache(module, args, kwargs)
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        q = (ids if ids is not None else embeds).shape[1]
        if self.chunks is not None and self.chunks.feeding:  # one of the first chunks of a chunked prefill
            chunked.begin(self, q)
            return None
        self.chunks = None
        end_chunk(self.model)
        self.prefilling = cache is None or cache.get_seq_length() == 0
        if self.prefilling:
            self.captures.clear()
            self.seen = 0
            self.compressed = False
            self.masks.clear()
            mask = kwargs.get("attention_mask")
            self.token_valid = None
            if isinstance(mask, torch.Tensor) and mask.ndim == 2 and not bool(mask.all()):
                self.token_valid = mask.bool()
            self.input_ids = ids
            self.compress_seconds = 0.0
            self.entered = {}
            if self.chunk_size and q > self.chunk_size:  # a prefill that fits one chunk is compressed as a whole
                return chunked.feed(self, module, args, kwargs)
        self._q = q
        return None

    def _after_forward(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        if self.replaying:
            return
        self.seen += self._q
        if self.prefilling:
            end_chunk(self.model)  # a chunk's extra passes (KVzip's reconstruction) are not prefill chunks
            self.cache = output_cache(output) or call_cache(module, args, kwargs)
            if self.method is not None and self.method.needs_whole_model() and self.cache is not None:
                if self.chunks is not None:
                    chunked.compress_model(self, self.cache)
                else:
                    start = time.perf_counter()
                    self.compress_all(self.cache)
                    self.compress_seconds += time.perf_counter() - start
            self.prefilling = False
            if self.chunks is not None:
                self.chunks = chunked.finish(self.chunks)

    def _on_attention(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      mask: Any, kwargs: dict) -> Any:
        i = module.layer_idx
        if i in self.extra_handlers:
            self.extra_handlers[i](module, query, key)
        if self.prefilling and not self.replaying:
            chunked.enter(self, i, query.shape[2])
            capture = {}
            if self.window:
                capture["queries"] = query[:, :, -self.window :].detach()
            if self.want_received:
                capture["received"] = received_attention(query, key, module.scaling)
            self.captures[i] = capture
        elif self.method is not None and self.method.decode_window and i in self.targets and not self.replaying:
            previous = self.captures.setdefault(i, {}).get("queries")
            queries = query.detach() if previous is None else torch.cat([previous, query.detach()], dim=2)
            self.captures[i]["queries"] = queries[:, :, -self.method.decode_window :]
        # a prefill's managed layers are the layers stage's, except a chunked prefill's, which the kv method reduced
        chunk = self.chunks is not None and not self.replaying
        owner = reading(self.model) if chunk else None
        if owner is not None and owner.owns(i):  # pruned inside the model in this chunk: the layers stage's mask
            return mask
        if self.masks.managed(i) and (self.replaying or not self.prefilling or chunk):
            mask = self.masks.mask_for(i, query, key)
            return chunked.mask_padding(self, i, mask, query, key) if chunk and self.token_valid is not None else mask
        return mask

    def _after_attention(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        i = module.layer_idx
        cache = call_cache(module, args, kwargs)
        if self.replaying or i not in self.targets or cache is None:
            return
        if not self.prefilling:
            if self.method.acts_on_decode():
                self.method.on_decode(self.decode_context(cache, i))
            return
        if self.method.needs_whole_model():
            return
        if self.chunks is not None:
            chunked.compress_layer(self, cache, i)
            return
        start = time.perf_counter()
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
        self.compressed = True

    def compress_all(self, cache: Any, method: KVMethod | None = None) -> None:
        """Compress every target layer of ``cache`` at once (methods that need the whole model)."""
        method = method or self.method
        self.cache = cache
        contexts = [self.context(cache, i) for i in self.targets]
        if not contexts or method.is_noop(max(c.n_tokens for c in contexts)):
            return
        self.prepare(method, contexts, cache)
        for ctx, result in zip(contexts, method.compress_model(contexts)):
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
    def replay(self, cache: Any, input_ids: torch.Tensor, on_attention: Callable) -> None:
        """Run extra tokens after the prefill through the decoder, calling ``on_attention(module, q, k)``
        in every layer, then put the cache back as it was (KVzip's reconstruction pass)."""
        saved, saved_masks = snapshot(cache), self.masks.snapshot()
        self.replaying = True
        self.extra_handlers = {i: on_attention for i in range(self.adapter.num_layers)}
        try:
            positions = (self.seen + torch.arange(input_ids.shape[1], device=input_ids.device)).unsqueeze(0)
            mask = None
            if self.token_valid is not None:
                mask = torch.cat([self.token_valid, self.token_valid.new_ones(input_ids.shape)], dim=-1).long()
            self.adapter.decoder(input_ids=input_ids, position_ids=positions, attention_mask=mask, use_cache=True,
                                 **cache_kwargs(self.adapter.decoder, cache))
        finally:
            self.replaying = False
            self.extra_handlers = {}
            restore(cache, saved)
            self.masks.restore(saved_masks)


@contextlib.contextmanager
def attach_kv(model: Any, method: KVMethod, tokenizer: Any = None) -> Iterator[KVRuntime]:
    """``with tz.compress(model, method)``: compress the cache after prefill, inside the block (one kv method per
    model: a second one, nested, is refused before any forward pass)."""
    with kv_attachment(model, method), KVRuntime(model, method, tokenizer=tokenizer).attached() as runtime:
        yield runtime
