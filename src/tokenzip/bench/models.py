"""Loading the model under test, its tokenizer alone, and its position limit.

Besides everything ``tz.load_model`` takes, the harness accepts ``tiny:<family>`` (a tiny seeded
random model from :mod:`tokenzip.testing`, for tests and dry runs).
"""

from __future__ import annotations

from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.models import loading
from tokenzip.models.loading import max_positions
from tokenzip.testing import tiny_model

TINY = "tiny:"


def load(spec: str, dtype: str = "float32", device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a bench run."""
    if spec.startswith(TINY):
        import torch

        model, tok = tiny_model(spec[len(TINY):])
        names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype not in names:
            raise TokenzipError(f"dtype must be one of {', '.join(names)}, got {dtype!r}")
        model = model.to(dtype=names[dtype])
        return (model.to(device) if device else model), tok
    return loading.load_model(spec, dtype=dtype, device=device)


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of ``spec`` without loading its weights (where possible)."""
    if spec.startswith(TINY):
        return load(spec)[1]
    return loading.load_tokenizer(spec)


def config_positions(spec: str) -> int:
    """``max_positions`` read from the config alone (0 when it cannot be read without the weights)."""
    return max_positions(load(spec)[0]) if spec.startswith(TINY) else loading.config_positions(spec)
