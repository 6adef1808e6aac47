"""Decoders and LLaVA for the layers stage: pruning hidden states inside a causal language model.

After the reduction layer K the later layers see fewer tokens. Three things must stay consistent:

* **positions**: every kept token keeps its input position. The layers after K get the rotary
  ``position_embeddings`` (and ``position_ids``) gathered at the kept positions, and new tokens
  generated later continue from the input length (the first layers' cache still holds every token,
  so ``cache.get_seq_length()`` and ``generate``'s position bookkeeping are unchanged).
* **attention masks**: during the prefill the runtime builds each later layer's mask (causal in input
  order, padding, sliding windows measured on input positions); when decoding, the later layers hold
  fewer cache entries than the first ones, so the single mask transformers builds no longer fits
  them: they are handed to the shared :class:`tokenzip.models.attachment.CacheMasks` (the KV stage's
  mechanism), which masks each layer from which of its stored entries are valid per batch row.
* **batches**: rows may keep different numbers of tokens; kept tokens are right-aligned (padding
  first, like left padding), so the last slot of every row is its last prompt token, whose logits
  ``generate`` reads.

LLaVA (``LlavaForConditionalGeneration``): the candidates are the image tokens. FastV / DART / random
prune them inside the language model after layer K; ``cls_attention`` prunes them before the
language model, ranked by the vision tower's [CLS] attention at the feature layer (VTC-CLS/FasterVLM).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.models.attachment import AttachedRuntime, Attachment, claimed, method_label
from tokenzip.models.calling import call_cache
from tokenzip.models.chunking import PrefillChunk
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.models.families import family_of
from tokenzip.models.masks import CacheMasks
from tokenzip.models.stack import LayerStack, StackHooks, StackRuntime, TokenSlots
from tokenzip.ops.attention import cls_attention


def decoder_stack(model: Any) -> LayerStack | None:
    """The layers-stage view of a supported decoder LLM or LLaVA model, else None."""
    from transformers import LlavaForConditionalGeneration, LlavaModel

    config = getattr(model, "config", None)
    if config is None:
        return None
    if isinstance(model, (LlavaForConditionalGeneration, LlavaModel)):
        llava = model.model if isinstance(model, LlavaForConditionalGeneration) else model
        adapter = DecoderAdapter(model)
        return LayerStack(architecture="vlm", model_type="llava", model=model, root=adapter.decoder,
                          layers=list(adapter.decoder.layers), attention=adapter.attention_modules,
                          extra={"adapter": adapter, "llava": llava})
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    if family_of(getattr(text, "model_type", None)) is None or not hasattr(model, "generate"):
        return None
    adapter = DecoderAdapter(model)
    return LayerStack(architecture="decoder", model_type=text.model_type, model=model, root=adapter.decoder,
                      layers=list(adapter.decoder.layers), attention=adapter.attention_modules,
                      extra={"adapter": adapter})


class _Forward:
    """What the hooks share during one forward pass."""

    def __init__(self) -> None:
        self.prefill = False
        self.padding: torch.Tensor | None = None
        self.input_ids: torch.Tensor | None = None
        self.vision_cls: torch.Tensor | None = None
        self.chunk: PrefillChunk | None = None  # the chunk of a chunked prefill this pass reads
        self.pruned = False  # a chunk of this prefill had tokens pruned: later layers hold fewer entries


@contextlib.contextmanager
def hooked_decoder(stack: LayerStack, runtime: StackRuntime) -> Iterator[None]:
    """Attach ``runtime`` to a decoder (or LLaVA's language model), prefill and decoding.

    The masks of the layers after the reduction live in the validity state every stage attached to
    the model shares (its :class:`~tokenzip.models.attachment.Attachment`'s ``masks``), so a KV method attached too
    compresses those layers from the entries they really hold, in either order of attachment.
    """
    with claimed(stack.model, "layers", runtime, _one_layers_method) as record, \
            DecoderHooks(stack, runtime, record).attached():
        yield


def _one_layers_method(held: AttachedRuntime) -> str:
    return (f"this decoder already has an in-model (layers) method attached, {method_label(held)}: use one layers "
            "method per model (a layers method and a kv method compose: tz.compress(model, layers_method, kv_method) "
            "or tz.pipeline)")


class DecoderHooks(StackHooks):
    """The layers runtime's hooks on a decoder (or LLaVA's language model), as methods sharing one forward pass's
    state (``fwd``) and the model's :class:`~tokenzip.models.attachment.Attachment` (``record``): the decoder's
    pre-hook (a prefill starts), each layer's pre-hook (prune before it, gather positions) and forward hook (the
    runtime reduces after it), and each attention module's handler (masks and statistics)."""

    def __init__(self, stack: LayerStack, runtime: StackRuntime, record: Attachment) -> None:
        super().__init__(stack, runtime)
        self.record = record
        self.adapter: DecoderAdapter = stack.extra["adapter"]
        self.llava = stack.extra.get("llava")
        self.fwd = _Forward()
        self.window = self.adapter.sliding_window()
        self.signature = inspect.signature(stack.root.forward)

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        stack = self.stack
        hooks = [stack.root.register_forward_pre_hook(self.before_decoder, with_kwargs=True)]
        for i, layer in enumerate(stack.layers):
            hooks.append(layer.register_forward_pre_hook(functools.partial(self.before_layer, i), with_kwargs=True))
        hooks += [layer.register_forward_hook(functools.partial(self.after_layer, i))
                  for i, layer in enumerate(stack.layers)]
        handlers = {module: functools.partial(self.on_attention, i) for i, module in enumerate(stack.attention)}
        if self.llava is not None:
            hooks.append(self.llava.register_forward_pre_hook(self.before_llava, with_kwargs=True))
            if self.runtime.reduces_input():
                handlers.update(vision_cls_handlers(self.llava, self.fwd))
        try:
            with self.record.routed(handlers):
                yield
        finally:
            for h in hooks:
                h.remove()

    def before_decoder(self, module: Any, args: tuple, kwargs: dict) -> None:
        fwd = self.fwd
        bound = self.signature.bind_partial(*args, **kwargs).arguments
        cache = call_cache(module, args, kwargs)
        fwd.prefill = cache is None or cache.get_seq_length() == 0
        if fwd.prefill:
            self.record.masks.clear()
            mask = bound.get("attention_mask")
            fwd.padding = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None
            fwd.pruned = False
            self.runtime.reset()

    def before_llava(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.fwd.input_ids = kwargs.get("input_ids", args[0] if args else None)

    def before_layer(self, i: int, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        fwd, runtime, llava = self.fwd, self.runtime, self.llava
        if i == 0:
            fwd.chunk = self.record.chunk
            if fwd.chunk is not None:  # a chunk of a chunked prefill, on the cache of the chunks before it
                fwd.prefill = True
                _check_chunked(runtime, args[0] if args else kwargs["hidden_states"], fwd, llava)
        if not fwd.prefill:
            return None
        if i == 0:
            hidden = args[0] if args else kwargs["hidden_states"]
            candidates = None
            if llava is not None:
                candidates = image_tokens(llava, fwd.input_ids, hidden)
            runtime.begin(hidden, None if fwd.chunk else fwd.padding, candidates, fwd.chunk)
            if fwd.vision_cls is not None and candidates is not None:
                scores = torch.zeros(candidates.shape, dtype=torch.float32, device=hidden.device)
                scores[candidates] = fwd.vision_cls.flatten().to(hidden.device)
                runtime.capture(-1, {"cls_attention": scores})
            fwd.vision_cls = None  # used once: the vision tower may run before LlavaModel.forward
            reduced = runtime.reduce_input(hidden)
            if reduced is not hidden:
                args = (reduced, *args[1:]) if args else args
                if not args:
                    kwargs["hidden_states"] = reduced
        st = runtime.state
        if fwd.chunk is not None and st is not None:
            fwd.pruned = fwd.pruned or st.changed  # in this chunk or an earlier one
            first = min((step for step in runtime.steps if step >= 0), default=None)
            if fwd.pruned and first is not None and i > first and fwd.chunk.owned_from is None:
                fwd.chunk.owned_from = i  # the layers after the first reduction hold fewer entries: masked here
        if st is None or not st.changed:
            return args, kwargs
        positions = st.position
        cos, sin = kwargs["position_embeddings"]
        kwargs["position_embeddings"] = (_gather(cos, positions), _gather(sin, positions))
        if isinstance(kwargs.get("position_ids"), torch.Tensor):
            kwargs["position_ids"] = kwargs["position_ids"].expand(positions.shape[0], -1).gather(1, positions)
        sliding = self.adapter.is_sliding(i) and self.window is not None
        if fwd.chunk is None:  # a chunk's layer is masked (and its validity extended) in its attention call
            self.record.masks.manage(i, st.valid[:, None, :], positions=positions if sliding else None,
                                     window=self.window if sliding else None)
        return args, kwargs

    def after_layer(self, i: int, module: Any, args: tuple, output: Any) -> Any:
        return super().after_layer(i, module, args, output) if self.fwd.prefill else None

    def on_attention(self, i: int, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     mask: Any, kwargs: dict) -> Any:
        fwd, runtime, masks = self.fwd, self.runtime, self.record.masks
        if not fwd.prefill:
            return masks.mask_for(i, query, key) if masks.managed(i) else mask
        sliding = self.window if self.adapter.is_sliding(i) else None
        if fwd.chunk is not None and fwd.chunk.owns(i) and runtime.state is not None:  # owned once tokens left
            mask = chunk_mask(masks, i, query, key, runtime.state, fwd.chunk.start, sliding)
        elif fwd.chunk is not None and masks.managed(i):  # the kv method reduced what earlier chunks left:
            mask = masks.mask_for(i, query, key)  # the model's one mask per layer type no longer fits it
        else:
            mask = runtime.mask(mask, query.dtype, sliding)
        # a chunk's tokens are the newest keys; the kept past is not theirs
        self.capture(i, query, key, mask, kwargs, newest=None if fwd.chunk is None else query.shape[2])
        return mask


def _check_chunked(runtime: StackRuntime, hidden: torch.Tensor, fwd: _Forward, llava: Any) -> None:
    """A layers method inside a chunked prefill takes one unpadded row of text (refused before the chunk runs)."""
    name = f"layers.{runtime.method.name}"
    if llava is not None:
        raise TokenzipError(f"{name} on LLaVA prunes a whole prefill (its image tokens); give the kv method no "
                            "chunk_size")
    padded = fwd.padding is not None and not bool(fwd.padding.bool().all())
    if hidden.shape[0] != 1 or padded:
        raise TokenzipError(f"{name} inside a chunked prefill takes one unpadded row (got {hidden.shape[0]} rows"
                            f"{', padded' if padded else ''}); prefill each row on its own, or give no chunk_size")


def _right_fit(x: torch.Tensor | None, n: int, fill: torch.Tensor) -> torch.Tensor:
    """The last ``n`` columns of ``x`` (B, ..., S), completed on the left from ``fill`` (B, ..., n) where shorter."""
    if x is None:
        return fill
    x = x[..., x.shape[-1] - n :] if x.shape[-1] >= n else x
    return torch.cat([fill[..., : n - x.shape[-1]].expand(*x.shape[:-1], -1), x], dim=-1)


def chunk_mask(masks: CacheMasks, i: int, query: torch.Tensor, key: torch.Tensor, st: TokenSlots, start: int,
               window: int | None) -> torch.Tensor:
    """Layer ``i``'s mask in one chunk of a chunked prefill, once the layers stage pruned its tokens.

    ``key`` holds the layer's stored entries (kept from earlier chunks, with their validity in ``masks``) and
    then the chunk's slots (``st``: the layers runtime's token state, ``start``: the chunk's first position).
    The mask is ``[valid stored entries | causal among the valid slots]``, restricted on a sliding-window layer
    to keys within ``window`` input positions; the layer's validity (and positions) then cover the slots too,
    so later chunks and decoding mask it from what it really holds.
    """
    b, q, s = query.shape[0], query.shape[2], key.shape[2] - query.shape[2]
    device = key.device
    prior = _right_fit(masks.valid.get(i), s, torch.ones(b, 1, s, dtype=torch.bool, device=device))
    heads = prior.shape[1]
    new = st.valid.to(device)[:, None, :].expand(b, heads, q)
    causal = torch.ones(q, q, dtype=torch.bool, device=device).tril()
    mask = torch.cat([prior[:, :, None, :].expand(b, heads, q, s), causal & new[:, :, None, :]], dim=-1)
    positions = None
    if window is not None:
        contiguous = (start - s + torch.arange(s, device=device)).expand(b, s)
        positions = torch.cat([_right_fit(masks.positions.get(i), s, contiguous), start + st.position.to(device)], 1)
        mask = mask & ((positions[:, -q:, None] - positions[:, None, :]) < window)[:, None]
    own = torch.cat([torch.zeros(q, s, dtype=torch.bool, device=device), torch.eye(q, dtype=torch.bool,
                                                                                     device=device)], dim=-1)
    mask = mask | (~mask.any(-1, keepdim=True) & own)  # a row that sees nothing sees itself (no NaN)
    masks.manage(i, torch.cat([prior, new], dim=-1), positions=positions, window=window)
    if heads > 1 and heads != query.shape[1]:  # per KV head -> per query head (GQA groups)
        mask = mask.repeat_interleave(query.shape[1] // heads, dim=1)
    return mask


def _gather(table: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of a per-position table (1 or B, N, D) at ``positions`` (B, M) -> (B, M, D)."""
    table = table.expand(positions.shape[0], -1, -1)
    return table.gather(1, positions[..., None].expand(-1, -1, table.shape[-1]))


def image_tokens(llava: Any, input_ids: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    """(B, N) True at the image placeholder tokens of a LLaVA prompt."""
    if input_ids is None:
        raise TokenzipError(
            "pruning LLaVA's image tokens needs input_ids (to find the <image> tokens), not inputs_embeds"
        )
    return (input_ids == llava.config.image_token_id).to(hidden.device)


def vision_cls_handlers(llava: Any, fwd: _Forward) -> dict[Any, Callable]:
    """Capture the vision tower's [CLS] attention at the layer LLaVA takes its image features from."""
    tower = llava.vision_tower
    inner = getattr(tower, "vision_model", tower)  # CLIPVisionModel: the layers sit directly under .encoder
    layers = inner.encoder.layers
    feature = llava.config.vision_feature_layer
    if not isinstance(feature, int):
        raise TokenzipError("cls_attention on LLaVA needs a single vision_feature_layer")
    index = feature % (len(layers) + 1) - 1  # hidden_states[f] is the output of layer f - 1
    drop_cls = llava.config.vision_feature_select_strategy == "default"

    def handler(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any,
                kwargs: dict) -> Any:
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        cls = cls_attention(query, key, scaling, mask if isinstance(mask, torch.Tensor) else None)
        fwd.vision_cls = cls[:, 1:] if drop_cls else cls
        return mask

    return {layers[index].self_attn: handler}
