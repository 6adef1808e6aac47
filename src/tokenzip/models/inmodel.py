"""Hooking the layers-stage runtime into a model's layer stack.

A :class:`~tokenzip.models.stack.LayerStack` says where a family keeps what the runtime needs: the layers (a list of
modules each mapping hidden states to hidden states), the attention module inside each layer, and
the module that receives the padding mask. The family adapters build it (``encoders.py`` for
BERT-style encoders, ``vision.py`` for ViT / DINOv2 / CLIP vision towers, ``decoder_layers.py`` (on
``decoders.py``'s adapter) for decoders and LLaVA); :func:`hooked` attaches the runtime with forward hooks on the
layers and an attention handler routed through tokenzip's SDPA attention implementation
(``tokenzip.models.attachment``), so no transformers function is patched and the model keeps its
fused attention kernel: statistics that need attention weights are computed for just the rows they
need ([CLS], last tokens) from the captured queries and keys.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.models import decoder_layers, encoders, vision
from tokenzip.models.attachment import route_attention
from tokenzip.models.families import supported_model_types
from tokenzip.models.stack import LayerStack, StackHooks, StackRuntime


def find_stack(model: Any) -> LayerStack:
    """The layer stack of a supported model, or a :class:`TokenzipError` naming what is supported."""
    for find in (encoders.encoder_stack, vision.vision_stack, decoder_layers.decoder_stack):
        stack = find(model)
        if stack is not None:
            return stack
    raise TokenzipError(
        f"the layers stage does not support {type(model).__name__}; supported: BERT-style encoders "
        f"(BertModel, RobertaModel, ...), ViTModel, Dinov2Model, decoder LLMs ({', '.join(supported_model_types())}) "
        "and LlavaForConditionalGeneration"
    )


class EncoderHooks(StackHooks):
    """The layers runtime's hooks on an encoder or vision tower: the padding mask from the root's call, the runtime's
    start before the first layer, then :class:`~tokenzip.models.stack.StackHooks`' layer and attention hooks."""

    def __init__(self, stack: LayerStack, runtime: StackRuntime) -> None:
        super().__init__(stack, runtime)
        self.padding: torch.Tensor | None = None
        self.signature = inspect.signature(stack.root.forward)

    def grab_padding(self, module: Any, args: tuple, kwargs: dict) -> None:
        try:
            mask = self.signature.bind_partial(*args, **kwargs).arguments.get("attention_mask")
        except TypeError:
            mask = kwargs.get("attention_mask")
        self.padding = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None

    def begin(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.runtime.begin(args[0] if args else kwargs["hidden_states"], self.padding)

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        stack = self.stack
        hooks = [stack.root.register_forward_pre_hook(self.grab_padding, with_kwargs=True),
                 stack.layers[0].register_forward_pre_hook(self.begin, with_kwargs=True)]
        hooks += [layer.register_forward_hook(functools.partial(self.after_layer, i))
                  for i, layer in enumerate(stack.layers)]
        handlers = {module: functools.partial(self.on_attention, i) for i, module in enumerate(stack.attention)}
        try:
            with route_attention(stack.model, handlers):
                yield
        finally:
            for h in hooks:
                h.remove()


@contextlib.contextmanager
def hooked(stack: LayerStack, runtime: StackRuntime) -> Iterator[None]:
    """Attach ``runtime`` (``tokenzip.layers.runtime.LayersRuntime``) to a layer stack, inside the block."""
    if stack.architecture in ("decoder", "vlm"):
        with decoder_layers.hooked_decoder(stack, runtime):
            yield
        return
    with EncoderHooks(stack, runtime).attached():
        yield
