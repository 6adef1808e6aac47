"""`load_model`: offline packaged models by short name, HF ids and local paths."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

import torch

from tokenzip.errors import TokenzipError, unknown_name
from tokenzip.models import gemma, smollm2
from tokenzip.models.catalog import MODELS

# Packaged models whose dequantized cache holds the tokenizer (and config) apart from the weights.
_CACHED = {gemma.NAME: gemma, smollm2.NAME: smollm2}


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise unknown_name("dtype", str(dtype), names)
    return names[dtype]


def load_model(
    name_or_path: str,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``.

    ``name_or_path`` is a short name from ``tokenzip models`` (``gemma-3-270m``, ``minilm-l6``, ...),
    a local directory, or a Hugging Face id (which needs hub access). For the vision
    model the second element is an image processor.
    """
    check_model_name(name_or_path)
    torch_dtype = _dtype(dtype)
    kwargs = pretrained_defaults(kwargs)
    if name_or_path in MODELS:
        module, function = MODELS[name_or_path].loader.split(":")
        model, tok = getattr(importlib.import_module(module), function)(torch_dtype, **kwargs)
    else:
        model, tok = _load_hf(name_or_path, torch_dtype, **kwargs)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tok


def pretrained_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` keywords with tokenzip's defaults: ``use_kernels=False`` unless the caller chose.

    transformers 5.25 made hub kernels the default (``use_kernels=True``): on CUDA, ``from_pretrained``
    swaps RMSNorm, the rotary embedding and activations for kernels downloaded from the hub at load time
    (on CPU nothing is swapped). tokenzip hooks the layers and attention of transformers' own modules and
    undoes their rotary convention, and its figures must not depend on the device or on hub access: it
    loads the torch implementation, as transformers up to 5.24 did by default. ``use_kernels=True`` is
    passed on when asked for. Versions without hub kernels (no ``set_use_kernels``) get nothing.
    """
    from transformers import PreTrainedModel

    if hasattr(PreTrainedModel, "set_use_kernels"):
        return {"use_kernels": False, **kwargs}
    return dict(kwargs)


def check_model_name(name_or_path: Any) -> None:
    """Refuse, before any work, what is neither a short name, an existing local path nor a HF id."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise TokenzipError("load_model needs a model name, a local path or a Hugging Face id")
    if name_or_path in MODELS:
        return
    path = Path(name_or_path).expanduser()
    looks_like_id = name_or_path.count("/") == 1 and not path.exists() and not name_or_path.startswith((".", "/"))
    if not path.exists() and not looks_like_id:
        raise unknown_name(
            "model", name_or_path, MODELS,
            hint="Pass a short name, an existing local directory, or a Hugging Face id like 'org/name'.",
        )
    if path.exists():
        _check_local(path)


WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def _check_local(path: Path) -> None:
    """A local model is a directory as ``save_pretrained`` writes it: config.json and weights."""
    layout = "a local model is a directory holding config.json and weights (*.safetensors or pytorch_model.bin), " \
             "as save_pretrained writes it"
    if not path.is_dir():
        raise TokenzipError(f"model {str(path)!r} is a file, not a directory: {layout}")
    missing = [what for what, found in (("config.json", (path / "config.json").is_file()),
                                        ("weights", any(any(path.glob(p)) for p in WEIGHTS))) if not found]
    if missing:
        raise TokenzipError(f"model directory {str(path)!r} has no {' and no '.join(missing)}: {layout}")


def _load_hf(name_or_path: str, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    """A local path or HF id: a causal LM when the config says so, else the base model."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise TokenzipError(
            f"could not load a model config from {name_or_path!r}: {exc}. Without hub access, use a short name "
            "from `tokenzip models` or a local directory holding config.json and weights."
        ) from exc
    archs = config.architectures or []
    causal = any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in archs)
    auto = AutoModelForCausalLM if causal else AutoModel
    model = auto.from_pretrained(name_or_path, dtype=dtype, **kwargs)
    return model, auto_tokenizer(name_or_path)


def auto_tokenizer(name_or_path: str, **kwargs: Any) -> Any:
    """transformers' ``AutoTokenizer`` for a local path or HF id (``kwargs`` go to ``from_pretrained``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path, **kwargs)


@functools.lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of a short model name (without loading the weights where possible), a local path or an HF id."""
    if name_or_path in _CACHED:
        return auto_tokenizer(str(_CACHED[name_or_path].tokenizer_dir()))
    if name_or_path in MODELS:
        return load_model(name_or_path)[1]
    try:
        return auto_tokenizer(name_or_path)
    except (OSError, ValueError) as exc:
        raise TokenzipError(
            f"could not load a tokenizer from {name_or_path!r}: {exc}. Pass a tokenizer object, a short model name "
            "from `tokenzip models`, or a local directory holding tokenizer files."
        ) from exc


def max_positions(model: Any) -> int:
    """Positions the model accepts (``max_position_embeddings`` of its text config); 0 when unknown."""
    return _config_positions(model.config) or int(getattr(model.config, "max_position_embeddings", 0) or 0)


def config_positions(name_or_path: str) -> int:
    """:func:`max_positions` read from the config alone (0 when it cannot be read without the weights)."""
    from transformers import AutoConfig

    if name_or_path in _CACHED:
        name_or_path = str(_CACHED[name_or_path].ensure_cache())
    try:
        return _config_positions(AutoConfig.from_pretrained(name_or_path))
    except (OSError, ValueError):
        return 0


def _config_positions(config: Any) -> int:
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    return int(getattr(text, "max_position_embeddings", 0) or 0)
