"""Which kv runtime is attached to a model: one per model (two would each evict from the same cache and multiply
their ratios), recorded in the model's :class:`~tokenzip.models.attachment.Attachment`, and the checks
:func:`tokenzip.kv.prefill` and :func:`tokenzip.compress` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.method import Method
from tokenzip.models.attachment import AttachedRuntime, attachment, method_label
from tokenzip.models.families import supported_model_types

ONE_KV_METHOD = (
    "Two kv methods would each evict from the same cache and multiply their ratios. Use one kv method per model: "
    "to quantize what an eviction keeps, kivi with evict= (tz.get_method('kivi', evict='snapkv', ratio=0.5), "
    "or 'kivi:evict=snapkv'); to change how a method's scores are used, a wrapper with base= (adakv, kvmerger, "
    "decoding: tz.get_method('adakv', base='snapkv', ratio=0.5))."
)


def one_kv_method(method: Method) -> Callable[[AttachedRuntime], str]:
    """The refusal of ``method``'s kv runtime on a model that has one attached already (for
    :func:`~tokenzip.models.attachment.claimed`)."""
    return lambda held: (f"{method.label()} cannot be attached: {method_label(held)} is already attached to this "
                         f"model by an enclosing `with tz.compress(...)` block. {ONE_KV_METHOD}")


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
