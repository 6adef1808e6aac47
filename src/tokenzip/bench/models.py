"""Loading the model under test, its tokenizer alone, and its position limit.

Besides everything ``tz.load_model`` takes, the harness accepts ``tiny:<family>`` (a tiny seeded
random model from :mod:`tokenzip.testing`, for tests and dry runs).
"""

from __future__ import annotations

from typing import Any

from tokenzip.errors import TokenzipError

TINY = "tiny:"


def load(spec: str, dtype: str = "float32", device: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a bench run."""
    if spec.startswith(TINY):
        import torch

        from tokenzip.testing import tiny_model

        model, tok = tiny_model(spec[len(TINY):])
        names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype not in names:
            raise TokenzipError(f"dtype must be one of {', '.join(names)}, got {dtype!r}")
        model = model.to(dtype=names[dtype])
        return (model.to(device) if device else model), tok
    import tokenzip as tz

    return tz.load_model(spec, dtype=dtype, device=device)


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of ``spec`` without loading its weights (where possible)."""
    from transformers import AutoTokenizer

    from tokenzip.models.catalog import MODELS

    if spec == "gemma-3-270m":
        from tokenzip.models.gemma import ensure_cache

        return AutoTokenizer.from_pretrained(str(ensure_cache()))
    if spec.startswith(TINY) or spec in MODELS:
        return load(spec)[1]
    return AutoTokenizer.from_pretrained(spec)


def max_positions(model: Any) -> int:
    """Positions the model accepts (``max_position_embeddings`` of its text config); 0 when unknown."""
    config = model.config
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return int(getattr(text, "max_position_embeddings", 0) or getattr(config, "max_position_embeddings", 0) or 0)


def config_positions(spec: str) -> int:
    """``max_positions`` read from the config alone (0 when it cannot be read without the weights)."""
    from transformers import AutoConfig

    if spec == "gemma-3-270m":
        from tokenzip.models.gemma import ensure_cache

        spec = str(ensure_cache())
    elif spec.startswith(TINY):
        return max_positions(load(spec)[0])
    try:
        config = AutoConfig.from_pretrained(spec)
    except (OSError, ValueError):
        return 0
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return int(getattr(text, "max_position_embeddings", 0) or 0)
