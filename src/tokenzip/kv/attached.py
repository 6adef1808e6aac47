"""Which kv runtime is attached to a model: one per model (two would each evict from the same cache and multiply
their ratios), recorded in the model's :class:`~tokenzip.models.attachment.Attachment`, and the checks
:func:`tokenzip.kv.prefill` and :func:`tokenzip.compress` share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.method import Method
from tokenzip.models.attachment import Attachment, attached, attachment, method_label
from tokenzip.models.families import supported_model_types

ONE_KV_METHOD = (
    "Two kv methods would each evict from the same cache and multiply their ratios. Use one kv method per model: "
    "to quantize what an eviction keeps, kivi with evict= (tz.get_method('kivi', evict='snapkv', ratio=0.5), "
    "or 'kivi:evict=snapkv'); to change how a method's scores are used, a wrapper with base= (adakv, kvmerger, "
    "decoding: tz.get_method('adakv', base='snapkv', ratio=0.5))."
)


@contextlib.contextmanager
def kv_attachment(model: Any, method: Method) -> Iterator[Attachment]:
    """``model``'s attachment for a block that attaches a kv runtime running ``method`` (the caller records it in
    ``record.kv``; it is removed on exit, also on error); refuse a model that is not a transformers model, or one
    that already has a kv runtime."""
    check_kv_model(model)
    with attached(model) as record:
        if record.kv is not None:
            raise TokenzipError(f"{method.label()} cannot be attached: {method_label(record.kv)} is already attached "
                                f"to this model by an enclosing `with tz.compress(...)` block. {ONE_KV_METHOD}")
        try:
            yield record
        finally:
            record.kv = None


def check_not_kv_attached(model: Any, what: str) -> None:
    """Refuse ``what`` (a call that runs its own kv runtime) on a model a ``with tz.compress(...)`` block has
    hooked: both would route the same attention calls."""
    record = attachment(model)
    if record is not None and record.kv is not None:
        raise TokenzipError(f"{what} runs its own kv hooks, but {method_label(record.kv)} is attached to this model "
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
