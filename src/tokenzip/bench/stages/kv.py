"""The kv stage: prefill the context, compress its cache, answer each question from that cache.

This is kvpress's protocol (query-agnostic; questions continue at positions after the original
context; the cache is restored between questions). With ``shared_prefill`` (the default) one
uncompressed prefill per sample serves every method and ratio: :meth:`tokenzip.kv.Prefill.compress`
works on a copy, and every post-prefill method depends only on what that prefill computed. The
prefill time reported in each row is then that shared prefill's. Everything goes through the worker's engine
(:class:`tokenzip.engines.base.Engine`: ``torch``, or ``llamacpp`` with ``--engine llamacpp``), so this module
does not know which one runs; rows record each question's time to first token. ``query_aware`` appends each
question before compression (one prefill per question and method). A method with a ``chunk_size``
(``--chunk-size``) compresses while prefilling in chunks, so it always prefills on its own; its row's
prefill seconds include that compression. Rows record peak memory for the prefill (with compression) and
for answering separately. Perplexity samples score the
continuation teacher-forced from the compressed cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from tokenzip.bench.kinds.base import NLL, get_kind
from tokenzip.bench.measure import PeakMemory, synchronize
from tokenzip.bench.stages import build_method, measurement
from tokenzip.engines.answer import answer, answer_from


def run(worker: Any, sample: Any, prompt: Any, pairs: list[tuple[str, float]]) -> Iterator[dict]:
    engine = worker.engine
    # that the engine runs each method was checked once, before the run (BenchConfig.validate)
    methods = [(spec, ratio, build_method("kv", spec, ratio)) for spec, ratio in pairs]
    if get_kind(sample.kind).measures == NLL:
        yield from _perplexity(worker, sample, prompt, methods)
        return
    questions = [q + p for q, p in prompt.questions]
    max_new = worker.max_new_tokens(sample)
    if worker.config.query_aware:
        for spec, ratio, method in methods:
            with PeakMemory(worker.device) as peak:
                answers = answer(engine, prompt.context, questions, method, query_aware=True, max_new_tokens=max_new)
                synchronize(worker.device)
            first = answers[0]
            yield measurement(
                spec, ratio, predictions=[a.text for a in answers], tokens_in=first.tokens_in,
                tokens_kept=first.tokens_in * (1 - first.achieved_ratio), achieved_ratio=first.achieved_ratio,
                prefill_seconds=sum(a.prefill_seconds for a in answers),
                compress_seconds=sum(a.compress_seconds for a in answers),
                decode_seconds=sum(a.decode_seconds for a in answers), new_tokens=sum(a.new_tokens for a in answers),
                cache_bytes_before=first.cache_bytes_before, cache_bytes=first.cache_bytes,
                peak_rss_bytes=peak.rss, peak_cuda_bytes=peak.cuda, rss_peak_scope=peak.scope,
                rss_start_bytes=peak.start_rss, first_token_seconds=[a.first_token_seconds for a in answers])
        return
    # a chunked prefill compresses while reading the context: each such method prefills on its own (first, so a
    # dense prefill too large for the machine cannot take their rows down with it)
    own = [m for m in methods if m[2] is not None and m[2].chunk_size]
    if not worker.config.shared_prefill:
        own += [m for m in methods if m not in own]
    for spec, ratio, method in own:
        with PeakMemory(worker.device) as prefill_peak:
            pre = engine.prefill(prompt.context, [method] if method is not None else [])
            compressed = engine.compress(pre, method)
            synchronize(worker.device)
        yield answered(worker, spec, ratio, pre, compressed, questions, max_new, prefill_peak)
        del pre, compressed
    shared = [m for m in methods if m not in own]
    if not shared:
        return
    with PeakMemory(worker.device) as prefill_peak:
        pre = engine.prefill(prompt.context, [m for _, _, m in shared if m is not None])
        synchronize(worker.device)
    for spec, ratio, method in shared:
        with PeakMemory(worker.device) as compress_peak:
            compressed = engine.compress(pre, method)
            synchronize(worker.device)
        yield answered(worker, spec, ratio, pre, compressed, questions, max_new, prefill_peak, compress_peak)
        del compressed


def answered(worker: Any, spec: str, ratio: float, pre: Any, compressed: Any, questions: list[str], max_new: int,
              prefill_peak: PeakMemory, compress_peak: PeakMemory | None = None) -> dict:
    """Answer every question from ``compressed`` and measure it: peaks of the prefill (with compression) and of
    answering, separately. A chunked prefill's seconds include its compression (``compress_seconds`` of them)."""
    with PeakMemory(worker.device) as decode_peak:
        outputs = [answer_from(worker.engine, compressed, q, max_new) for q in questions]
        synchronize(worker.device)
    phase = [p for p in (prefill_peak, compress_peak) if p is not None]
    prefill_rss = max(p.rss for p in phase)
    prefill_cuda = None if prefill_peak.cuda is None else max(p.cuda or 0 for p in phase)
    achieved = compressed.achieved_ratio
    return measurement(
        spec, ratio, predictions=[o.text for o in outputs], tokens_in=pre.n_tokens,
        tokens_kept=pre.n_tokens * (1 - achieved), achieved_ratio=achieved, prefill_seconds=pre.seconds,
        compress_seconds=compressed.compress_seconds, decode_seconds=sum(o.seconds for o in outputs),
        new_tokens=sum(o.new_tokens for o in outputs), cache_bytes=compressed.bytes,
        cache_bytes_before=None if pre.chunk_size else pre.bytes,  # a chunked prefill never held the dense cache
        peak_rss_bytes=max(prefill_rss, decode_peak.rss),
        peak_cuda_bytes=None if decode_peak.cuda is None else max(prefill_cuda or 0, decode_peak.cuda),
        rss_peak_scope=decode_peak.scope, prefill_peak_rss_bytes=prefill_rss, decode_peak_rss_bytes=decode_peak.rss,
        prefill_peak_cuda_bytes=prefill_cuda, decode_peak_cuda_bytes=decode_peak.cuda,
        rss_start_bytes=prefill_peak.start_rss, chunk_size=pre.chunk_size,
        first_token_seconds=[o.first_token_seconds for o in outputs])


def _perplexity(worker: Any, sample: Any, prompt: Any, methods: list) -> Iterator[dict]:
    engine = worker.engine
    with PeakMemory(worker.device) as prefill_peak:
        pre = engine.prefill(prompt.context, [m for _, _, m in methods if m is not None])
    for spec, ratio, method in methods:
        with PeakMemory(worker.device) as peak:
            compressed = engine.compress(pre, method)
            start = time.perf_counter()
            nll, scored = engine.nll(compressed, sample.continuation)
            synchronize(worker.device)
            seconds = time.perf_counter() - start
        achieved = compressed.achieved_ratio
        yield measurement(
            spec, ratio, tokens_in=pre.n_tokens, tokens_kept=pre.n_tokens * (1 - achieved), achieved_ratio=achieved,
            prefill_seconds=pre.seconds, compress_seconds=compressed.compress_seconds, decode_seconds=seconds,
            new_tokens=0, cache_bytes_before=pre.bytes, cache_bytes=compressed.bytes,
            peak_rss_bytes=max(peak.rss, prefill_peak.rss), peak_cuda_bytes=peak.cuda, rss_peak_scope=peak.scope,
            nll=nll, tokens_scored=scored)
