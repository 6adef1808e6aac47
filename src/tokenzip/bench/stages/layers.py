"""The layers stage: hidden-state tokens are pruned or merged inside the model while it reads the input.

Decoders: the whole prompt (context, then the question) goes through ``with tz.compress(model,
method)`` and the model generates greedily; the method reduces tokens during that prefill (its
protected trailing tokens keep the question), and decoding runs on the shorter caches. Prefill and
decode times are split at the end of the first forward pass. Perplexity: the context is prefilled
under the method, then the continuation is scored teacher-forced from that state. Encoders
(``embedding`` task): every passage is embedded with and without the method; the score is the
mean cosine to the uncompressed embedding (plus top-10 neighbour agreement).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

import tokenzip as tz
from tokenzip.bench.kinds.base import EMBEDDINGS, NLL, get_kind
from tokenzip.bench.measure import PeakMemory, synchronize
from tokenzip.bench.scoring import embedding_fidelity
from tokenzip.bench.stages import build_method, measurement
from tokenzip.kv.cache import cache_bytes
from tokenzip.models.calling import cache_kwargs, call_cache, new_cache, output_cache
from tokenzip.models.encoders import embed
from tokenzip.ops.information import mean_nll


class ForwardClock:
    """Times each forward call of ``model``; after the first one, records the method's report and cache size."""

    def __init__(self, model: Any, method: Any) -> None:
        self.model, self.method = model, method
        self.ends: list[float] = []
        self.start = 0.0
        self.reports: list[Any] = []
        self.cache_bytes: int | None = None

    @contextlib.contextmanager
    def attached(self) -> Iterator[ForwardClock]:
        def after(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            self.ends.append(time.perf_counter())
            if self.method is not None and getattr(self.method, "last_report", None) is not None:
                if not self.reports or self.method.last_report is not self.reports[-1]:
                    self.reports.append(self.method.last_report)
            if len(self.ends) == 1:
                cache = output_cache(output) or call_cache(module, args, kwargs)
                self.cache_bytes = cache_bytes(cache) if cache is not None else None

        handle = self.model.register_forward_hook(after, with_kwargs=True)
        compress = tz.compress(self.model, self.method) if self.method is not None else contextlib.nullcontext()
        try:
            with compress:
                self.start = time.perf_counter()
                yield self
        finally:
            handle.remove()

    @property
    def prefill_seconds(self) -> float:
        return self.ends[0] - self.start if self.ends else 0.0


def _ids(tok: Any, text: str, special: bool, device: Any) -> torch.Tensor:
    return tok(text, return_tensors="pt", add_special_tokens=special).input_ids.to(device)


def run(worker: Any, sample: Any, prompt: Any, pairs: list[tuple[str, float]]) -> Iterator[dict]:
    methods = [(spec, ratio, build_method("layers", spec, ratio)) for spec, ratio in pairs]
    measures = get_kind(sample.kind).measures
    if measures == EMBEDDINGS:
        yield from _embedding(worker, sample, methods)
        return
    if measures == NLL:
        yield from _perplexity(worker, sample, prompt, methods)
        return
    model, tok, device = worker.model, worker.tokenizer, worker.device
    context = _ids(tok, prompt.context, True, device)
    for spec, ratio, method in methods:
        predictions, prefill, decode, new, kept, cache, tokens_in = [], 0.0, 0.0, 0, [], [], 0
        with PeakMemory(device) as peak:
            for question, prefix in prompt.questions:
                ids = torch.cat([context, _ids(tok, question + prefix, False, device)], dim=1)
                with torch.no_grad(), ForwardClock(model, method).attached() as clock:
                    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=worker.max_new_tokens(sample), pad_token_id=tok.pad_token_id)
                    synchronize(device)
                    total = time.perf_counter() - clock.start
                generated = out[0, ids.shape[1]:].tolist()
                eos = model.generation_config.eos_token_id
                eos = set(eos if isinstance(eos, list) else [eos])
                generated = [t for t in generated if t not in eos and t != tok.pad_token_id]
                predictions.append(tok.decode(generated, skip_special_tokens=True))
                prefill += clock.prefill_seconds
                decode += total - clock.prefill_seconds
                new += len(generated)
                tokens_in += ids.shape[1]
                report = clock.reports[0] if clock.reports else None
                kept.append(report.kept[0] if report else ids.shape[1])
                cache.append(clock.cache_bytes)
        yield _row(spec, ratio, predictions, tokens_in, sum(kept), prefill, decode, new, cache, peak,
                   clock.reports[0] if clock.reports else None)


def _row(spec, ratio, predictions, tokens_in, kept, prefill, decode, new, cache, peak, report) -> dict:
    return measurement(
        spec, ratio, predictions=predictions, tokens_in=tokens_in, tokens_kept=kept,
        achieved_ratio=report.ratio if report else 0.0, prefill_seconds=prefill, compress_seconds=0.0,
        decode_seconds=decode, new_tokens=new, cache_bytes=None if None in cache else sum(cache),
        peak_rss_bytes=peak.rss, peak_cuda_bytes=peak.cuda, rss_peak_scope=peak.scope,
        compute_fraction=report.compute_fraction if report else 1.0)


@torch.no_grad()
def _perplexity(worker: Any, sample: Any, prompt: Any, methods: list) -> Iterator[dict]:
    model, tok, device = worker.model, worker.tokenizer, worker.device
    context = _ids(tok, prompt.context, True, device)
    continuation = _ids(tok, sample.continuation, False, device)
    for spec, ratio, method in methods:
        with PeakMemory(device) as peak, ForwardClock(model, method).attached() as clock:
            cache = new_cache(model)
            model(input_ids=context, **cache_kwargs(model, cache), use_cache=True, logits_to_keep=1)
            logits = model(input_ids=continuation, **cache_kwargs(model, cache), use_cache=True).logits
            synchronize(device)
            total = time.perf_counter() - clock.start
        nll, scored = mean_nll(logits[0, :-1], continuation[0, 1:])
        report = clock.reports[0] if clock.reports else None
        n = context.shape[1]
        row = _row(spec, ratio, [], n, report.kept[0] if report else n,
                   clock.prefill_seconds, total - clock.prefill_seconds, 0, [clock.cache_bytes], peak, report)
        row.update(nll=nll, tokens_scored=scored)
        yield row


@torch.no_grad()
def _embedding(worker: Any, sample: Any, methods: list) -> Iterator[dict]:
    model, tok, device = worker.model, worker.tokenizer, worker.device
    tokens_in = sum(len(ids) for ids in tok(sample.texts, truncation=True, max_length=worker.max_length).input_ids)
    reference = None
    for spec, ratio, method in methods:
        with PeakMemory(device) as peak, ForwardClock(model, method).attached() as clock:
            vectors = embed(model, tok, sample.texts, max_length=worker.max_length)
            synchronize(device)
            seconds = time.perf_counter() - clock.start
        if method is None:
            reference = vectors
        elif reference is None:
            reference = embed(model, tok, sample.texts, max_length=worker.max_length)
        fidelity = embedding_fidelity(reference, vectors)
        kept = sum(sum(r.kept) for r in clock.reports) if clock.reports else tokens_in
        ratio_done = (sum(sum(r.input_tokens) - sum(r.kept) for r in clock.reports) /
                      max(1, sum(sum(r.candidates) for r in clock.reports))) if clock.reports else 0.0
        yield measurement(
            spec, ratio, tokens_in=tokens_in, tokens_kept=kept, achieved_ratio=ratio_done, prefill_seconds=seconds,
            compress_seconds=0.0, decode_seconds=0.0, new_tokens=0, peak_rss_bytes=peak.rss, peak_cuda_bytes=peak.cuda,
            rss_peak_scope=peak.scope, cosine=fidelity["cosine"], neighbours=fidelity["neighbours"])
