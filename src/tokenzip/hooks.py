"""`compress(model, *methods)`: hook kv and layers methods into a model, unhook on exit.

:func:`attach_method` is the one table saying how a stage's method hooks into a model; ``tz.compress``, the
pipeline and the server all go through it (the methods themselves know nothing of hooks)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.method import Method

HOOKED_STAGES = ("kv", "layers")


def attach_method(model: Any, method: Method, tokenizer: Any = None) -> contextlib.AbstractContextManager[Any]:
    """Hook one kv or layers method into ``model`` for a ``with`` block; the block gets the stage's runtime
    (:class:`tokenzip.kv.runtime.KVRuntime`, :class:`tokenzip.layers.runtime.LayersRuntime`). ``tokenizer`` is for kv
    methods that tokenize an instruction (KVzip's repeat prompt)."""
    check_hooked(method)
    if method.stage == "kv":
        from tokenzip.kv.runtime import attach_kv  # lazy: keeps tokenzip.hooks' own imports free of torch

        return attach_kv(model, method, tokenizer)
    from tokenzip.layers.runtime import attach_layers  # lazy: keeps tokenzip.hooks' own imports free of torch

    return attach_layers(model, method)


def check_hooked(method: Method) -> None:
    """Refuse a method that does not hook into a model (prompt and tokenizer methods act on text)."""
    if method.stage not in HOOKED_STAGES:
        raise TokenzipError(
            f"{method.stage}.{method.name} does not hook into a model; compress() takes kv and layers methods"
        )


@contextlib.contextmanager
def compress(model: Any, *methods: Method, chunk_size: int | None = None, tokenizer: Any = None) -> Iterator[Any]:
    """Apply kv-stage and layers-stage methods to ``model`` inside a ``with`` block.

    ``chunk_size``: the kv method compresses while prefilling, ``chunk_size`` tokens at a time, so the
    cache never holds more than its budget + one chunk per layer (:mod:`tokenzip.kv.chunked`; the same as
    the method's own ``chunk_size`` parameter). ``tokenizer``: the model's, for kv methods that tokenize an
    instruction (KVzip; without it KVzip warns and re-reads the context without its instruction).

    Every hook is removed on exit, also when the block raises. An in-model pruning (layers) method and a
    KV-cache method compose, chunked too (the layers method then prunes each chunk, one unpadded row at a
    time); two kv methods on one model (given together or in nested blocks) are refused.
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
        check_hooked(method)
    kv = [m.label() for m in methods if m.stage == "kv"]
    if len(kv) > 1:
        from tokenzip.kv.attached import ONE_KV_METHOD  # lazy: keeps tokenzip.hooks' own imports free of torch

        raise TokenzipError(f"compress() got {len(kv)} kv methods ({', '.join(kv)}). {ONE_KV_METHOD}")
    if chunk_size is not None:
        if not kv:
            raise TokenzipError("chunk_size= is for a kv method (it compresses while prefilling); none was given")
        own = {m.chunk_size for m in methods if m.stage == "kv" and m.chunk_size is not None}
        if own - {chunk_size}:
            raise TokenzipError(f"chunk_size={chunk_size} was given, and the method's own chunk_size is "
                                f"{', '.join(map(str, sorted(own)))}: give it once (either one)")
        methods = tuple(dataclasses.replace(m, chunk_size=chunk_size) if m.stage == "kv" else m for m in methods)
    if any(getattr(m, "chunk_size", None) for m in methods):
        for method in methods:
            if method.stage == "layers":
                method.check_chunked()
    with contextlib.ExitStack() as stack:
        for method in methods:
            stack.enter_context(attach_method(model, method, tokenizer))
        yield model
