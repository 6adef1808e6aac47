"""Which kv method is attached to which model: one per model (two would each evict from the same cache and
multiply their ratios), and the checks :func:`tokenzip.kv.prefill` and :func:`tokenzip.compress` share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.models.families import supported_model_types
from tokenzip.registry import Method

# id(model) -> the kv method attached to it (one per model: two would each evict, multiplying their ratios)
_KV_ATTACHED: dict[int, str] = {}

ONE_KV_METHOD = (
    "Two kv methods would each evict from the same cache and multiply their ratios. Use one kv method per model: "
    "to quantize what an eviction keeps, kivi with evict= (tz.get_method('kivi', evict='snapkv', ratio=0.5), "
    "or 'kivi:evict=snapkv'); to change how a method's scores are used, a wrapper with base= (adakv, kvmerger, "
    "decoding: tz.get_method('adakv', base='snapkv', ratio=0.5))."
)


@contextlib.contextmanager
def kv_attachment(model: Any, method: Method) -> Iterator[None]:
    """Record ``method`` as the kv method attached to ``model`` inside the block (removed on exit, also on
    error); refuse a model that is not a transformers model, or one that already has a kv method."""
    check_kv_model(model)
    key = id(model)
    if key in _KV_ATTACHED:
        raise TokenzipError(f"{method.label()} cannot be attached: {_KV_ATTACHED[key]} is already attached to this "
                            f"model by an enclosing `with tz.compress(...)` block. {ONE_KV_METHOD}")
    _KV_ATTACHED[key] = method.label()
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
        supported = ", ".join(supported_model_types())
        raise TokenzipError(
            f"the kv stage works on Hugging Face decoder models ({supported}, and LLaVA's language "
            f"model); got a {type(model).__name__}, which has no transformers config. Load one with "
            "tz.load_model(name) or transformers' AutoModelForCausalLM.from_pretrained(...)")
