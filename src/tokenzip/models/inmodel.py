"""Hooking the layers-stage runtime into a model's layer stack.

A :class:`~tokenzip.models.stack.LayerStack` says where a family keeps what the runtime needs: the layers (a list of
modules each mapping hidden states to hidden states), the attention module inside each layer, and
the module that receives the padding mask. The family adapters build it (``encoders.py`` for
BERT-style encoders, ``vision.py`` for ViT / DINOv2 / CLIP vision towers, ``decoder_layers.py`` (on
``decoders.py``'s adapter) for decoders and LLaVA); :func:`hooked` attaches the runtime with forward hooks on the
layers and an attention handler routed through tokenzip's SDPA attention implementation
(``tokenzip.models.attention``), so no transformers function is patched and the model keeps its
fused attention kernel: statistics that need attention weights are computed for just the rows they
need ([CLS], last tokens) from the captured queries and keys.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.models import decoder_layers, encoders, vision
from tokenzip.models.attention import route_attention
from tokenzip.models.families import supported_model_types
from tokenzip.models.stack import LayerStack, statistics


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


def _padding_from(root: Any) -> Callable:
    signature = inspect.signature(root.forward)

    def grab(module: Any, args: tuple, kwargs: dict) -> None:
        try:
            mask = signature.bind_partial(*args, **kwargs).arguments.get("attention_mask")
        except TypeError:
            mask = kwargs.get("attention_mask")
        module._tokenzip_padding = mask if isinstance(mask, torch.Tensor) and mask.ndim == 2 else None

    return grab


@contextlib.contextmanager
def hooked(stack: LayerStack, runtime: Any) -> Iterator[None]:
    """Attach ``runtime`` (``tokenzip.layers.runtime.LayersRuntime``) to a layer stack, inside the block."""
    if stack.kind in ("decoder", "vlm"):
        with decoder_layers.hooked_decoder(stack, runtime):
            yield
        return
    root = stack.root

    def begin(module: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        runtime.begin(hidden, getattr(root, "_tokenzip_padding", None))

    def after(i: int) -> Callable:
        def hook(module: Any, args: tuple, output: Any) -> Any:
            if isinstance(output, tuple):
                return (runtime.after_layer(i, output[0]), *output[1:])
            return runtime.after_layer(i, output)

        return hook

    def on_attention(i: int) -> Callable:
        def handler(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any,
                    kwargs: dict) -> Any:
            mask = runtime.mask(mask, query.dtype)
            wants = runtime.wants(i)
            if wants:
                scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
                runtime.capture(i, statistics(wants, query, key, scaling, mask))
            return mask

        return handler

    hooks = [root.register_forward_pre_hook(_padding_from(root), with_kwargs=True),
             stack.layers[0].register_forward_pre_hook(begin, with_kwargs=True)]
    hooks += [layer.register_forward_hook(after(i)) for i, layer in enumerate(stack.layers)]
    handlers = {module: on_attention(i) for i, module in enumerate(stack.attention)}
    try:
        with route_attention(stack.model, handlers):
            yield
    finally:
        for h in hooks:
            h.remove()
        if hasattr(root, "_tokenzip_padding"):
            del root._tokenzip_padding
