"""The prompt stage: compress the context text, then let the model answer from the shorter text.

The context is compressed with ``tz.prompt.compress`` (question-aware methods get the sample's
questions); token counts are on the model's own tokenizer, and the scorer is the model under test
unless the worker was given another. The model then answers exactly as in the uncompressed kv
protocol (prefill the context once, each question after it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import tokenzip as tz
from tokenzip.bench.kinds.base import ANSWERS, get_kind
from tokenzip.bench.measure import PeakMemory, synchronize
from tokenzip.bench.prompting import format_sample
from tokenzip.bench.stages import build_method, is_noop, measurement, method_spec
from tokenzip.errors import TokenzipError


def run(worker: Any, sample: Any, prompt: Any, pairs: list[tuple[str, float]]) -> Iterator[dict]:
    if get_kind(sample.kind).measures != ANSWERS:
        raise TokenzipError(f"task {sample.task} ({sample.kind}) measures the kv and layers stages, not prompt")
    model, tok = worker.model, worker.tokenizer
    max_new = worker.max_new_tokens(sample)
    question = "\n".join(q.text for q in sample.questions)
    for spec, ratio in pairs:
        name, params = method_spec("prompt", spec)
        method = build_method("prompt", spec, ratio)
        with PeakMemory(worker.device) as peak:
            result = None
            text = sample.context
            if not is_noop("prompt", method):
                result = tz.prompt.compress(sample.context, ratio=ratio, question=question, method=name,
                                            scorer=worker.scorer(), **params)
                text = result.text
            shorter = format_sample(dataclasses.replace(sample, context=text), tok, worker.config.prompt_style)
            pre = tz.kv.prefill(model, tok, shorter.context)
            cache = pre.compress(None)
            outputs = [tz.kv.answer_from(model, tok, cache, q + p, max_new_tokens=max_new)
                       for q, p in shorter.questions]
            synchronize(worker.device)
        before = result.tokens_before if result else worker.count(sample.context)
        after = result.tokens_after if result else before
        yield measurement(
            spec, ratio, predictions=[t for t, _, _ in outputs], tokens_in=before, tokens_kept=after,
            achieved_ratio=result.ratio if result else 0.0, prefill_seconds=pre.seconds,
            compress_seconds=result.seconds if result else 0.0, decode_seconds=sum(s for _, _, s in outputs),
            new_tokens=sum(n for _, n, _ in outputs), cache_bytes_before=None, cache_bytes=pre.bytes,
            peak_rss_bytes=peak.rss, peak_cuda_bytes=peak.cuda, rss_peak_scope=peak.scope,
            notes=list(result.notes) if result else [])
