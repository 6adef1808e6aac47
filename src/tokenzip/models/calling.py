"""How transformers passes the KV cache: the one place in tokenzip that knows its keyword.

transformers 5.24 renamed ``past_key_values`` to ``cache`` in the forward signatures of models,
decoder layers and attention modules, in ``generate``'s model inputs and in the output dataclasses;
the old name survives only as a deprecation shim for callers. A forward hook sees whatever keyword
the *caller* used, so tokenzip reads the name from the callee's signature (never from a version
number) and accepts either name where a caller may still use the old one.

Everything else in tokenzip calls these functions instead of naming the keyword.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

# Newest first: the first name found in a signature is the one to pass.
CACHE_NAMES = ("cache", "past_key_values")


@functools.lru_cache(maxsize=256)
def _parameters(forward: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(forward).parameters)


def _forward_of(module_or_fn: Any) -> Callable:
    forward = getattr(module_or_fn, "forward", module_or_fn)
    return getattr(forward, "__func__", forward)  # the function, so the lru_cache key is per class


def cache_keyword(module_or_fn: Any) -> str:
    """The keyword under which ``module_or_fn`` (a module or its ``forward``) takes the KV cache."""
    names = _parameters(_forward_of(module_or_fn))
    for name in CACHE_NAMES:
        if name in names:
            return name
    raise TypeError(f"{getattr(module_or_fn, '__name__', type(module_or_fn).__name__)} takes no KV cache argument "
                    f"(looked for {', '.join(CACHE_NAMES)})")


def cache_kwargs(module_or_fn: Any, cache: Any) -> dict[str, Any]:
    """``{keyword: cache}`` to pass ``cache`` to ``module_or_fn``: ``model(**cache_kwargs(model, cache), ...)``."""
    return {cache_keyword(module_or_fn): cache}


def call_cache(module: Any, args: tuple, kwargs: dict) -> Any:
    """The cache passed to ``module.forward(*args, **kwargs)``, as a forward (pre-)hook sees the call.

    Callers may use either name (the deprecated one is renamed only inside the forward), or pass it
    positionally; the positional slot is found from the signature.
    """
    for name in CACHE_NAMES:
        if kwargs.get(name) is not None:
            return kwargs[name]
    if args:
        names = [n for n in _parameters(_forward_of(module)) if n != "self"]
        for name in CACHE_NAMES:
            if name in names and names.index(name) < len(args):
                return args[names.index(name)]
    return None


def output_cache(output: Any) -> Any:
    """The cache a model returned in its output dataclass (``output.cache`` or ``output.past_key_values``)."""
    if output is None or not hasattr(output, "keys"):
        return None
    for name in CACHE_NAMES:
        if name in output.keys():
            return output[name]
    return None


def new_cache(model: Any) -> Any:
    """An empty dynamic cache for ``model`` (sliding-window layers where its config has them)."""
    from transformers import DynamicCache

    return DynamicCache(config=model.config)
