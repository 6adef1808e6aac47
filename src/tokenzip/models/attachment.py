"""tokenzip's attention implementation, and the one record of what tokenzip attached to a model.

transformers builds one attention mask per layer *type* (sized on the first layer of that type) and
hands it to the attention function. Once a cache is compressed, layers hold different numbers of
entries, some entries are invalid (padding, or dropped for one head but not another), and that
single mask no longer fits. Instead of patching transformers, tokenzip registers an attention
implementation (``transformers.AttentionInterface``) and a matching mask function
(``AttentionMaskInterface``) under the name ``"tokenzip_sdpa"``; a model is switched to it for the
duration of a ``with`` block and switched back on exit. The function runs the handlers registered
for the attention module (to capture queries, or to rebuild the mask for a managed layer), then
PyTorch SDPA.

Everything tokenzip attaches to one model lives in one :class:`Attachment` (as kvpress's press holds its own
hooks): the attention handlers, the validity state the stages share (:class:`~tokenzip.models.masks.CacheMasks`),
the kv and layers runtimes attached (typed by the :class:`AttachedRuntime` protocol: ``models/`` imports neither
stage), and the prefill chunk the model is reading. The outermost ``with``
block creates it on the model object itself and removes it on exit, also on error; there is no registry of live
models.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

from tokenzip.errors import TokenzipError
from tokenzip.models.chunking import PrefillChunk
from tokenzip.models.masks import CacheMasks

__all__ = ["ATTN_NAME", "AttachedMethod", "AttachedRuntime", "Attachment", "CacheMasks", "Handler", "attached",
           "attachment", "claimed", "route_attention"]

ATTN_NAME = "tokenzip_sdpa"
_RECORD = "_tokenzip_attachment"  # the attribute holding a model's (and its hooked attention modules') record

# handler(module, query, key, value, attention_mask, kwargs) -> attention_mask
Handler = Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, Any, dict], Any]


def _attention(module, query, key, value, attention_mask, **kwargs):
    record = getattr(module, _RECORD, None)
    for handler in record.handlers.get(module, ()) if record is not None else ():
        attention_mask = handler(module, query, key, value, attention_mask, kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTN_NAME, _attention)
# The masks transformers builds are sized by the cache layers (tokenzip's compressed layers report the
# entries they hold); per-row / per-head validity of those entries is added by CacheMasks in the handlers.
AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
assert ATTN_NAME in ALL_MASK_ATTENTION_FUNCTIONS


class AttachedMethod(Protocol):
    """What the attachment shows of an attached stage's method (a :class:`tokenzip.method.Method`)."""

    @property
    def name(self) -> str: ...

    def label(self) -> str: ...


class AttachedRuntime(Protocol):
    """A stage's runtime as the attachment records it: the kv stage's :class:`tokenzip.kv.runtime.KVRuntime` or
    the layers stage's :class:`tokenzip.layers.runtime.LayersRuntime` (``models/`` imports neither: they satisfy
    this structurally), and the method it runs."""

    @property
    def method(self) -> AttachedMethod | None: ...


def method_label(runtime: AttachedRuntime) -> str:
    """``kv.snapkv (ratio 0.5)``: the label of the method ``runtime`` runs, for messages."""
    return runtime.method.label() if runtime.method is not None else "a kv runtime with no method"


class Attachment:
    """What tokenzip attached to one model, from the outermost ``with`` block's entry to its exit.

    ``handlers``: attention module -> its handlers, in attachment order; ``masks``: the validity state every
    attached stage shares; ``kv`` / ``layers``: the kv / layers runtime a ``tz.compress`` block attached (one each
    per model; the layers one on decoders, where both stages share the cache); ``chunk``: the chunk of a chunked
    prefill the current forward pass reads.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.original = model.config._attn_implementation
        self.masks = CacheMasks()
        self.handlers: dict[Any, list[Handler]] = {}
        self.kv: AttachedRuntime | None = None
        self.layers: AttachedRuntime | None = None
        self.chunk: PrefillChunk | None = None
        self.depth = 0

    @contextlib.contextmanager
    def routed(self, handlers: dict[Any, Handler], masks: CacheMasks | None = None) -> Iterator[CacheMasks]:
        """Add ``handlers`` (attention module -> handler) for the block; ``masks`` replaces the shared validity
        state for the block (a compressed cache being served brings its own)."""
        outer = self.masks
        if masks is not None:
            self.masks = masks
        for module, handler in handlers.items():
            self.handlers.setdefault(module, []).append(handler)
            setattr(module, _RECORD, self)
        try:
            yield self.masks
        finally:
            for module, handler in handlers.items():
                remaining = [h for h in self.handlers.get(module, []) if h is not handler]
                if remaining:
                    self.handlers[module] = remaining
                else:
                    self.handlers.pop(module, None)
                    module.__dict__.pop(_RECORD, None)
            self.masks = outer


def attachment(model: Any) -> Attachment | None:
    """The record of what is attached to ``model``, inside a block that attached something (else None)."""
    return model.__dict__.get(_RECORD) if hasattr(model, "__dict__") else None


@contextlib.contextmanager
def attached(model: Any) -> Iterator[Attachment]:
    """``model``'s :class:`Attachment` for the block: the outermost block creates it (switching the model to
    tokenzip's attention) and removes it on exit (switching back), also on error; nested blocks share it."""
    record = attachment(model)
    if record is None:
        record = Attachment(model)
        model.set_attn_implementation(ATTN_NAME)
        setattr(model, _RECORD, record)
    record.depth += 1
    try:
        yield record
    finally:
        record.depth -= 1
        if record.depth == 0:
            model.__dict__.pop(_RECORD, None)
            model.set_attn_implementation(record.original)


@contextlib.contextmanager
def claimed(model: Any, slot: str, runtime: AttachedRuntime,
            refusal: Callable[[AttachedRuntime], str]) -> Iterator[Attachment]:
    """``model``'s attachment with ``runtime`` in its ``slot`` (``"kv"`` or ``"layers"``: one runtime of each stage per
    model) for the block, cleared on exit, also on error; a slot another runtime holds is refused, before anything
    runs, with the message ``refusal(holder)``."""
    with attached(model) as record:
        holder = getattr(record, slot)
        if holder is not None:
            raise TokenzipError(refusal(holder))
        setattr(record, slot, runtime)
        try:
            yield record
        finally:
            setattr(record, slot, None)


@contextlib.contextmanager
def route_attention(model: Any, handlers: dict[Any, Handler], masks: CacheMasks | None = None
                    ) -> Iterator[CacheMasks]:
    """Run ``model`` with tokenzip's attention and ``handlers`` (attention module -> handler) inside the block.

    Yields the :class:`CacheMasks` every stage attached to this model shares (one validity state per
    model, so a layers method and a kv method agree on which entries each layer holds). ``masks``
    makes that state the given one for the block (a compressed cache being served brings its own).
    Nested blocks on the same model compose; the original implementation is restored when the
    outermost block exits, also on error. Attention runs through SDPA while routed.
    """
    with attached(model) as record, record.routed(handlers, masks) as shared:
        yield shared

