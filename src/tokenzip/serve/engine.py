"""The model side of the server: checks a request, then runs it on the one model thread.

A request is first *planned* (tokenized and checked: spec, lengths; any error is a 400 before any model
work), then *admitted* (a bounded count of requests waiting or running; beyond it, 429), then *run* on a
single worker thread that owns the model (the model and its caches are not thread-safe), one request at a
time. Each request builds its own method objects and decodes from its own reference to a cache entry; the
only state requests share is the context cache, whose entries are restored after every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip import spec as specs
from tokenzip.errors import TokenzipError
from tokenzip.hooks import attach
from tokenzip.serve.cache import ContextCache, Entry
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.generate import Detokenizer, answer_tokens, plain_tokens
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.split import Prompt


def parse_spec(text: str | None, default: specs.PipelineSpec, param: str = "compression") -> specs.PipelineSpec:
    """The request's pipeline (its ``compression`` field, else the server default); 400 when bad."""
    if text is None:
        return default
    try:
        return specs.parse(text)
    except TokenzipError as exc:
        raise bad_request(f"bad compression spec {text!r}: {exc}", param=param, code="invalid_compression") from None


@dataclass
class Job:
    """One planned request."""

    prompt: Prompt
    spec: specs.PipelineSpec
    context_ids: list[int]
    question_ids: list[int]
    max_tokens: int
    stops: list[str]
    key: tuple | None  # context cache key; None when the request has no reusable context
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)

    @property
    def prompt_tokens(self) -> int:
        return len(self.context_ids) + len(self.question_ids)


@dataclass
class Result:
    """What a run produced."""

    text: str
    completion_tokens: int
    finish_reason: str
    usage: dict[str, Any]


class Engine:
    """One model, its tokenizer, the context cache and the single thread that runs requests."""

    def __init__(self, model: Any, tokenizer: Any, name: str, default_spec: str | None = None,
                 cache_bytes: int = 2 << 30, max_queue: int = 16, metrics: Metrics | None = None,
                 chat_max_tokens: int = 256) -> None:
        from tokenzip.models.decoders import DecoderAdapter

        self.model, self.tok, self.name = model, tokenizer, name
        self.front_tok = copy.deepcopy(tokenizer)  # planning tokenizes off the model thread, with its own copy
        self.front_lock = threading.Lock()
        self.default_spec = parse_spec(default_spec, specs.PipelineSpec(), param="--compression")
        self.check_servable(self.default_spec, "--compression")
        self.cache = ContextCache(cache_bytes)
        self.metrics = metrics or Metrics()
        self.max_queue = max_queue
        self.chat_max_tokens = chat_max_tokens
        self.limit = DecoderAdapter(model).max_positions or getattr(model.config, "max_position_embeddings", 0)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tokenzip-model")
        self._pending = 0
        self._lock = threading.Lock()
        self._mean_seconds = 1.0

    # --- planning (any thread) -----------------------------------------------------------------------
    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        """A layers method the served model cannot take (e.g. an encoder method on a decoder) is a 400."""
        if spec.get("layers") is not None:
            from tokenzip.pipeline import Pipeline

            try:
                Pipeline(spec.without("prompt", "kv")).check(self.model)
            except TokenzipError as exc:
                raise bad_request(f"{spec.get('layers')}: {exc}", param=param,
                                  code="unsupported_compression") from None

    def encode(self, text: str, special: bool) -> list[int]:
        if not text:
            return []
        with self.front_lock:
            return list(self.front_tok(text, add_special_tokens=special).input_ids)

    def plan(self, prompt: Prompt, spec: specs.PipelineSpec, max_tokens: int | None, stops: list[str]) -> Job:
        """Tokenize and check a request; raises :class:`APIError` (4xx) when it cannot run."""
        self.check_servable(spec)
        context_text, question_text = prompt.render()
        if not question_text.strip() and not context_text:
            raise bad_request("the prompt is empty", param="prompt")
        special = not prompt.templated
        context_ids = self.encode(context_text, special)
        question_ids = self.encode(question_text, special and not context_ids)
        if not question_ids:
            raise bad_request("the question is empty: with a context field, the prompt holds the question",
                              param="prompt")
        n = len(context_ids) + len(question_ids)
        if max_tokens is None:
            max_tokens = max(1, min(self.chat_max_tokens, self.limit - n)) if self.limit else self.chat_max_tokens
        if self.limit and n + max_tokens > self.limit:
            raise bad_request(
                f"This model's maximum context length is {self.limit} tokens. However, you requested "
                f"{n + max_tokens} tokens ({n} in the prompt, {max_tokens} in the completion). Please reduce the "
                "length of the prompt or the completion, or compress it before sending.",
                param="messages" if prompt.kind == "chat" else "prompt", code="context_length_exceeded")
        key = None
        if context_ids:
            pm = spec.build("prompt")
            aware = question_text if pm is not None and getattr(pm, "question_aware", False) else None
            key = (self.name, tuple(context_ids), str(spec), aware)
        return Job(prompt, spec, context_ids, question_ids, max_tokens, stops, key)

    # --- admission -----------------------------------------------------------------------------------
    def admit(self) -> None:
        """Count a request in, or refuse it with 429 when ``max_queue`` are already waiting or running."""
        with self._lock:
            if self._pending >= self.max_queue:
                self.metrics.rejected.inc()
                wait = max(1, math.ceil(self._mean_seconds * self._pending))
                raise APIError(429, f"the server is busy ({self._pending} requests queued); retry in {wait} s",
                               type="rate_limit_error", code="queue_full", headers={"Retry-After": str(wait)})
            self._pending += 1
            self.metrics.queue.set(self._pending)

    def release(self, seconds: float | None = None) -> None:
        with self._lock:
            self._pending -= 1
            self.metrics.queue.set(self._pending)
            if seconds is not None:
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    def describe(self) -> dict[str, Any]:
        """What /health reports."""
        return {"model": self.name, "mode": "local", "pid": os.getpid(), "compression": str(self.default_spec),
                "queue": self._pending,
                "max_queue": self.max_queue, "cache_entries": len(self.cache), "cache_bytes": self.cache.bytes,
                "cache_max_bytes": self.cache.max_bytes, "max_positions": self.limit}

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, job: Job, emit: Callable[[str], None]) -> asyncio.Future:
        """Run ``job`` on the model thread; ``emit`` receives text pieces as they are generated."""
        future: Future = self._executor.submit(self.run, job, emit)
        return asyncio.wrap_future(future)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        """Run any model work (the page's compress endpoint) on the model thread."""
        return asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- the model thread ----------------------------------------------------------------------------
    def run(self, job: Job, emit: Callable[[str], None]) -> Result:
        """Build or reuse the compressed context, then decode greedily (on the model thread)."""
        usage: dict[str, Any] = {"spec": str(job.spec), "context_tokens": len(job.context_ids),
                                 "question_tokens": len(job.question_ids)}
        if job.cancel.is_set():
            self.metrics.cancelled.inc()
            return Result("", 0, "cancelled", usage)
        entry, usage["cache"] = self._context(job)
        cached = usage["cache"] == "hit"
        stages = [dict(row, cached=cached, **({"seconds": 0.0} if cached else {})) for row in entry.stages] \
            if entry else []
        self.metrics.record_stages(stages)
        self.metrics.cache_bytes.set(self.cache.bytes)
        self.metrics.cache_entries.set(len(self.cache))
        start = time.perf_counter()
        text, n, finish, first = self._decode(job, entry, emit)
        now = time.perf_counter()
        usage.update(
            stages=stages, kv_bytes_held=entry.bytes if entry else 0, kv_bytes_dense=entry.dense_bytes if entry else 0,
            cached_tokens=len(job.context_ids) if cached else 0, decode_seconds=now - start,
            time_to_first_token_seconds=(first or now) - job.started, seconds=now - job.started,
        )
        self.metrics.prompt_tokens.inc(job.prompt_tokens)
        self.metrics.completion_tokens.inc(n)
        return Result(text, n, finish, usage)

    def _context(self, job: Job) -> tuple[Entry | None, str]:
        """The compressed context (cache hit, or built now) and the cache outcome: hit, miss, off or none."""
        if job.key is not None and self.cache.max_bytes:
            entry = self.cache.get(job.key)
            (self.metrics.cache_hits if entry is not None else self.metrics.cache_misses).inc()
            if entry is not None:
                return entry, "hit"
        if not job.context_ids and len(job.question_ids) < 2:
            return None, "none"  # a one-token prompt: nothing to prefill
        entry = self._build(job)
        if job.key is None:
            return entry, "none"
        return entry, "miss" if self.cache.put(job.key, entry) else "off"

    def _decode(self, job: Job, entry: Entry | None,
                emit: Callable[[str], None]) -> tuple[str, int, str, float | None]:
        """Greedy tokens after the context; returns text, token count, finish reason, first-token time."""
        q = job.question_ids if job.context_ids else job.question_ids[-1:]
        q_ids = torch.tensor([q], device=next(self.model.parameters()).device)
        tokens = (answer_tokens(self.model, entry.compressed, q_ids, job.max_tokens) if entry
                  else plain_tokens(self.model, q_ids, job.max_tokens))
        detok, n, first = Detokenizer(self.tok, job.stops), 0, None
        with closing(tokens) as gen, torch.no_grad():
            for token in gen:
                first = first or time.perf_counter()
                n += 1
                piece = detok.push(token)
                if piece:
                    emit(piece)
                if detok.stopped or job.cancel.is_set() or n >= job.max_tokens:
                    break
        tail = detok.flush()
        if tail:
            emit(tail)
        if job.cancel.is_set():
            self.metrics.cancelled.inc()
            return detok.text, n, "cancelled", first
        return detok.text, n, "stop" if detok.stopped or n < job.max_tokens else "length", first

    def _build(self, job: Job) -> Entry:
        """Prompt stage on the documents, then prefill and kv-compress the context (query-agnostic)."""
        from tokenzip.kv.answer import prefill

        rows: list[dict[str, Any]] = []
        ids = job.context_ids or job.question_ids[:-1]
        pm = job.spec.get("prompt")
        if pm is not None and job.context_ids and job.prompt.documents:
            ids, row = self._prompt_stage(job, pm)
            rows.append(row)
        kv, layers = job.spec.build("kv"), job.spec.build("layers")
        start = time.perf_counter()
        with attach(self.model, layers) if layers is not None else contextlib.nullcontext() as runtime:
            pre = prefill(self.model, self.tok, torch.tensor([ids], device=next(self.model.parameters()).device),
                          [kv] if kv is not None else [])
        if layers is not None:  # in-model pruning during the prefill: tokens leaving the last reduction layer
            report = runtime.report
            rows.append({"stage": "layers", "method": str(job.spec.get("layers")), "tokens_before": len(ids),
                         "tokens_after": report.kept[0] if report else len(ids), "bytes_after": pre.bytes,
                         "seconds": pre.seconds})
        compressed = pre.compress(kv)
        kv_row = {"stage": "kv", "method": str(job.spec.get("kv") or "none"),
                  "entries_before": compressed.counts.get("entries_before", 0),
                  "entries_after": compressed.counts.get("entries_after", 0),
                  "bytes_before": pre.bytes, "bytes_after": compressed.bytes,
                  "prefill_seconds": pre.seconds, "compress_seconds": compressed.compress_seconds,
                  "seconds": time.perf_counter() - start}
        rows.append(kv_row)
        dense = pre.bytes
        del pre
        return Entry(compressed, len(ids), compressed.bytes, dense, rows)

    def _prompt_stage(self, job: Job, pm: specs.StageSpec) -> tuple[list[int], dict[str, Any]]:
        docs, row = compress_documents(self.model, self.tok, job.prompt.documents, job.prompt.question, pm)
        context_text, _ = job.prompt.render(docs)
        ids = list(self.tok(context_text, add_special_tokens=not job.prompt.templated).input_ids)
        return ids, dict(row, context_tokens_after=len(ids))


def compress_documents(model: Any, tok: Any, docs: list[str], question: str | None,
                       pm: specs.StageSpec) -> tuple[list[str], dict[str, Any]]:
    """The prompt stage on each document, question-aware; returns the new documents and the stage's row."""
    import tokenzip as tz

    start = time.perf_counter()
    out, before, after = [], 0, 0
    for doc in docs:
        r = tz.prompt.compress(doc, ratio=pm.ratio if pm.budget is None else None, budget=pm.budget,
                               question=question, method=pm.method, scorer=(model, tok), **pm.kwargs)
        out.append(r.text.rstrip() + doc[len(doc.rstrip()):])  # keep the separator before the question
        before, after = before + r.tokens_before, after + r.tokens_after
    row = {"stage": "prompt", "method": str(pm), "tokens_before": before, "tokens_after": after,
           "seconds": time.perf_counter() - start}
    return out, row
