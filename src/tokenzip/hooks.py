"""`compress(model, *methods)`: hook kv and layers methods into a model, unhook on exit."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.registry import Method

# id(model) -> the kv method attached to it (one per model: two would each evict, multiplying their ratios)
_KV_ATTACHED: dict[int, str] = {}

_ONE_KV_METHOD = (
    "Two kv methods would each evict from the same cache and multiply their ratios. Use one kv method per model: "
    "to quantize what an eviction keeps, kivi with evict= (tz.get_method('kivi', evict='snapkv', ratio=0.5), "
    "or 'kivi:evict=snapkv'); to change how a method's scores are used, a wrapper with base= (adakv, kvmerger, "
    "decoding: tz.get_method('adakv', base='snapkv', ratio=0.5))."
)


@contextlib.contextmanager
def compress(model: Any, *methods: Method, chunk_size: int | None = None) -> Iterator[Any]:
    """Apply kv-stage and layers-stage methods to ``model`` inside a ``with`` block.

    ``chunk_size``: the kv method compresses while prefilling, ``chunk_size`` tokens at a time, so the
    cache never holds more than its budget + one chunk per layer (:mod:`tokenzip.kv.chunked`; the same as
    the method's own ``chunk_size`` parameter).

    Every hook is removed on exit, also when the block raises. An in-model pruning (layers) method and a
    KV-cache method compose; two kv methods on one model (given together or in nested blocks) are refused.
    Prompt and tokenizer methods act on text, not on a model: use ``tz.prompt.compress`` and
    ``tokenzip tokenizers`` for those.
    """
    if not methods:
        raise TokenzipError(
            "compress(model, method) needs at least one method, e.g. tz.get_method('snapkv', ratio=0.5)"
        )
    for method in methods:
        if not isinstance(method, Method):
            raise TokenzipError(f"expected a method from tz.get_method(...), got {type(method).__name__}")
        if method.stage not in ("kv", "layers") or getattr(method, "hook", None) is None:
            raise TokenzipError(
                f"{method.stage}.{method.name} does not hook into a model; compress() takes kv and layers methods"
            )
    kv = [label(m) for m in methods if m.stage == "kv"]
    if len(kv) > 1:
        raise TokenzipError(f"compress() got {len(kv)} kv methods ({', '.join(kv)}). {_ONE_KV_METHOD}")
    if chunk_size is not None:
        if not kv:
            raise TokenzipError("chunk_size= is for a kv method (it compresses while prefilling); none was given")
        methods = tuple(dataclasses.replace(m, chunk_size=chunk_size) if m.stage == "kv" else m for m in methods)
    if any(getattr(m, "chunk_size", None) for m in methods) and any(m.stage == "layers" for m in methods):
        raise TokenzipError("a chunked prefill (chunk_size) does not compose with a layers method yet: the layers "
                            "method prunes a whole prefill at once")
    with contextlib.ExitStack() as stack:
        for method in methods:
            stack.enter_context(method.hook(model))
        yield model


def label(method: Method) -> str:
    """``kv.snapkv (ratio 0.5)``: a method's name with its ratio or budget, for messages."""
    size = f"budget {method.budget}" if method.budget is not None else f"ratio {method.ratio}"
    return f"{method.stage}.{method.name} ({size})"


@contextlib.contextmanager
def kv_attachment(model: Any, method: Method) -> Iterator[None]:
    """Record ``method`` as the kv method attached to ``model`` inside the block (removed on exit, also on
    error); refuse a model that is not a transformers model, or one that already has a kv method."""
    check_kv_model(model)
    key = id(model)
    if key in _KV_ATTACHED:
        raise TokenzipError(f"{label(method)} cannot be attached: {_KV_ATTACHED[key]} is already attached to this "
                            f"model by an enclosing `with tz.compress(...)` block. {_ONE_KV_METHOD}")
    _KV_ATTACHED[key] = label(method)
    try:
        yield
    finally:
        _KV_ATTACHED.pop(key, None)


def check_not_kv_attached(model: Any, what: str) -> None:
    """Refuse ``what`` (a call that runs its own kv runtime) on a model a ``with tz.compress(...)`` block has
    hooked: both would route the same attention calls."""
    if id(model) in _KV_ATTACHED:
        raise TokenzipError(f"{what} runs its own kv hooks, but {_KV_ATTACHED[id(model)]} is attached to this model "
                            "by an enclosing `with tz.compress(...)` block; call it outside the block (pass the "
                            "method to it instead)")


def check_kv_model(model: Any) -> None:
    """The kv stage hooks Hugging Face decoders: refuse anything without a transformers config up front."""
    if getattr(model, "config", None) is None:
        from tokenzip.models.families import supported_model_types

        supported = ", ".join(supported_model_types())
        raise TokenzipError(
            f"the kv stage works on Hugging Face decoder models ({supported}, and LLaVA's language "
            f"model); got a {type(model).__name__}, which has no transformers config. Load one with "
            "tz.load_model(name) or transformers' AutoModelForCausalLM.from_pretrained(...)")
