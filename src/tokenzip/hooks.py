"""`compress(model, *methods)`: hook kv and layers methods into a model, unhook on exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.registry import Method


@contextlib.contextmanager
def compress(model: Any, *methods: Method) -> Iterator[Any]:
    """Apply kv-stage and layers-stage methods to ``model`` inside a ``with`` block.

    Every hook is removed on exit, also when the block raises. Several methods compose, e.g. an
    in-model pruning method and a KV-cache method. Prompt and tokenizer methods act on text, not on
    a model: use ``tz.prompt.compress`` and ``tokenzip tokenizers`` for those.
    """
    if not methods:
        raise TokenzipError(
            "compress(model, method) needs at least one method, e.g. tz.get_method('snapkv', ratio=0.5)"
        )
    with contextlib.ExitStack() as stack:
        for method in methods:
            if not isinstance(method, Method):
                raise TokenzipError(f"expected a method from tz.get_method(...), got {type(method).__name__}")
            hook = getattr(method, "hook", None)
            if method.stage not in ("kv", "layers") or hook is None:
                raise TokenzipError(
                    f"{method.stage}.{method.name} does not hook into a model; compress() takes kv and layers methods"
                )
            stack.enter_context(hook(model))
        yield model
