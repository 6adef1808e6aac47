"""Stage adapters: how one stage's method is applied to a sample and how the model then answers.

Each adapter module defines ``run(worker, sample, prompt, pairs)``, a generator of one measurement
dict per ``(method spec, ratio)`` pair (yielded as soon as it is measured), with the predictions and what it cost (see
:func:`measurement`). ``"none"`` (or ratio 0 for methods that do nothing at ratio 0) is the
uncompressed model, measured the same way.
"""

from __future__ import annotations

import importlib
from typing import Any

from tokenzip.bench.tasks.registry import parse_spec
from tokenzip.errors import TokenzipError
from tokenzip.method import Method, get_method, method_class
from tokenzip.params import from_text

STAGES = ("kv", "prompt", "layers", "pipeline")
PIPELINE = "pipeline"  # methods are pipeline specs (tokenzip.spec): any of the three stages, composed
NONE = "none"
# peak memory per phase (the kv stage): prefill (and compression), then answering; rss_start_bytes is the
# process's RSS when the prefill began (weights and all), so the prefill's own working memory is the difference
PHASE_MEMORY = ("prefill_peak_rss_bytes", "decode_peak_rss_bytes", "prefill_peak_cuda_bytes",
                "decode_peak_cuda_bytes", "rss_start_bytes")


def build_method(stage: str, spec: str, ratio: float) -> Method | None:
    """The method object for ``spec`` (``"snapkv"``, ``"kivi:bits=2"``) at ``ratio``; None for ``"none"``.

    A ``budget`` in the spec (``"snapkv:budget=2048"``, entries kept) replaces the ratio: it runs at ratio 0.
    """
    name, params = method_spec(stage, spec)
    if name == NONE:
        return None
    if "ratio" in params:
        raise TokenzipError(f"method {spec!r}: give ratios with --ratios, not inside the method spec")
    if "budget" in params and ratio:
        raise TokenzipError(f"method {spec!r} keeps a budget of entries instead of a ratio: run it with --ratios 0")
    return get_method(name, stage=stage, **({} if "budget" in params else {"ratio": ratio}), **params)


def method_spec(stage: str, spec: str) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of a method spec (``"extractive:reorder=none"``), its values read as every text that sets
    parameters reads them (:func:`tokenzip.params.from_text`: by each parameter's type; objects refused)."""
    name, texts = parse_spec(spec)
    if name == NONE:
        return name, {}
    name = name.removeprefix(f"{stage}.")  # "layers.random" in the layers stage
    return name, from_text(method_class(name, stage), texts, repr(spec))


def with_chunk_size(specs: list[str], chunk_size: int | None) -> list[str]:
    """Method specs with ``chunk_size`` added (``--chunk-size``: kv methods compress while prefilling in
    chunks); ``none`` and specs that set their own are left as they are."""
    if chunk_size is None:
        return list(specs)
    out = []
    for spec in specs:
        name, params = parse_spec(spec)
        if name == NONE or "chunk_size" in params:
            out.append(spec)
        else:
            out.append(f"{spec}{',' if ':' in spec else ':'}chunk_size={chunk_size}")
    return out


def is_noop(stage: str, method: Method | None) -> bool:
    """True when ``method`` leaves the model exactly as it is (then the uncompressed row stands for it)."""
    if method is None:
        return True
    if method.budget is not None or method.ratio > 0:
        return False
    changes = getattr(method, "changes_storage", None)
    return not (changes is not None and changes())


def adapter(stage: str) -> Any:
    if stage not in STAGES:
        raise TokenzipError(f"the bench runs the stages {', '.join(STAGES)}; got {stage!r}")
    return importlib.import_module(f"tokenzip.bench.stages.{stage}")


def measurement(method: str, ratio: float, **fields: Any) -> dict[str, Any]:
    """A measurement dict with every field present (None where a stage has no such figure)."""
    row: dict[str, Any] = {
        "method": method, "ratio": ratio, "predictions": [], "tokens_in": None, "tokens_kept": None,
        "achieved_ratio": None, "prefill_seconds": None, "compress_seconds": None, "decode_seconds": None,
        "new_tokens": None, "decode_tokens_per_second": None, "cache_bytes_before": None, "cache_bytes": None,
        "peak_rss_bytes": None, "peak_cuda_bytes": None, "rss_peak_scope": None,
    }
    extra = {"nll", "tokens_scored", "cosine", "neighbours", "compute_fraction", "notes", "chunk_size",
             "first_token_seconds", *PHASE_MEMORY}
    unknown = set(fields) - set(row) - extra
    if unknown:
        raise KeyError(f"unknown measurement fields: {sorted(unknown)}")
    row.update(fields)
    if row["decode_seconds"] and row["new_tokens"] is not None:
        row["decode_tokens_per_second"] = row["new_tokens"] / row["decode_seconds"]
    return row
