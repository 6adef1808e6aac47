"""``tokenzip serve --engine llamacpp``: the server's engine protocol (:mod:`tokenzip.serve.protocol`) over llama.cpp.

Requests are planned exactly as :class:`~tokenzip.serve.engine.LocalEngine` plans them (the chat template, where
compression applies, the context cache keyed by the exact context ids and spec, every 4xx before any work) and
streamed by the same code; only the model work differs. A context is prefilled, compressed and saved in llama.cpp
once (:class:`tokenzip.engines.llamacpp.engine.LlamaCppEngine`: scores from llama.cpp's own tensors, one set of
positions evicted from every layer, the kept cells saved with ``llama_state_seq_get_data``), kept in the context
cache as those bytes, and restored for every later request about it; such a request reports the context's tokens
in ``usage.prompt_tokens_details.cached_tokens``. The pipeline may hold one kv method that llama.cpp can run (a
prompt or layers stage, or another kv method, is a 400 naming the ones it can).

One thread owns the llama.cpp context and answers one request at a time (no batching: ``max_batch`` is 1); a
request's ``n`` choices run one after the other, each from the restored context, sampled by the server's own
:class:`~tokenzip.serve.generate.Choice` (temperature, top-p, penalties, seeds, log-probabilities, stops).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from tokenzip import spec as specs
from tokenzip.engines.base import Compressed
from tokenzip.errors import TokenzipError
from tokenzip.serve.cache import ContextCache, Entry
from tokenzip.serve.engine import DEFAULT_MIN_CONTEXT_TOKENS, Job, LocalEngine, parse_spec
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.scheduler import Emit, ModelThread, Scheduler, Started, _Running


class LlamaCppServeEngine(LocalEngine):
    """A GGUF in llama.cpp behind the server (see the module docstring). ``engine``: a
    :class:`tokenzip.engines.llamacpp.engine.LlamaCppEngine`; ``tokenizer``: the model's Hugging Face tokenizer
    (its chat template, and the text of each token for streaming and log-probabilities; its ids are the GGUF's)."""

    def __init__(self, engine: Any, tokenizer: Any, name: str, default_spec: str | None = None,
                 cache_bytes: int = 2 << 30, min_context_tokens: int = DEFAULT_MIN_CONTEXT_TOKENS,
                 metrics: Metrics | None = None, chat_max_tokens: int = 256) -> None:
        self.engine, self.tok, self.name = engine, tokenizer, name
        self.front_lock = threading.Lock()
        self.default_spec = parse_spec(default_spec, specs.PipelineSpec(), param="--compression")
        self.check_servable(self.default_spec, "--compression")
        self.cache = ContextCache(cache_bytes)
        self.metrics = metrics or Metrics()
        self.max_batch, self.min_context_tokens, self.chat_max_tokens = 1, min_context_tokens, chat_max_tokens
        self.limit = engine.limit
        self.vocab_size = engine.model.n_vocab
        self.max_token_chars = max((len(piece) for piece in tokenizer.get_vocab()), default=1)
        self.templated = bool(getattr(tokenizer, "chat_template", None))
        eos = {t for t in range(self.vocab_size) if engine.model.is_end(t)}
        if self.templated and tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)  # the template's end of turn
        self.scheduler = Runner(self.begin, self.engine, eos, on_cancel=self.metrics.cancelled.inc)

    @classmethod
    def load(cls, model: str, n_ctx: int | None = None, threads: int | None = None, **options: Any
             ) -> LlamaCppServeEngine:
        """The packaged GGUF of ``model`` (``gemma-3-270m``, ``smollm2-135m``) and its tokenizer."""
        from tokenzip.engines import load_engine
        from tokenzip.models.loading import load_tokenizer

        check_servable(parse_spec(options.get("default_spec"), specs.PipelineSpec(), param="--compression"),
                       "--compression")  # before loading anything
        if str(model).endswith(".gguf"):
            raise TokenzipError("tokenzip serve --engine llamacpp serves a packaged model by its short name "
                                "(gemma-3-270m, smollm2-135m): it needs the model's tokenizer and chat template too")
        return cls(load_engine("llamacpp", model, n_ctx=n_ctx, threads=threads), load_tokenizer(model), model,
                   **options)

    # --- preparing ----------------------------------------------------------------------------------------
    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        check_servable(spec, param)

    def encode(self, text: str, special: bool) -> list[int]:
        """llama.cpp's own tokens (special tokens written in the text read as such, as the template writes them)."""
        if not text:
            return []
        with self.front_lock:
            return self.engine.tokenize(text, special)

    # --- the llama.cpp thread ------------------------------------------------------------------------------
    def begin(self, job: Job) -> tuple[Started, Compressed | None]:
        """What a request starts from: its compressed context (cached or built now; None: an empty one) and the
        tokens to feed after it, with what the usage reports."""
        if job.mode == "whole":
            return Started(None, job.context_ids + job.question_ids, {"cache": "none"}), None
        entry, outcome = self._context(job)
        cached = outcome == "hit"
        stages = [dict(row, cached=cached, **({"seconds": 0.0} if cached else {})) for row in entry.stages]
        self.metrics.cache_bytes.set(self.cache.bytes)
        self.metrics.cache_entries.set(len(self.cache))
        feed = job.question_ids if job.mode == "context" else job.question_ids[-1:]
        info = {"cache": outcome, "stages": stages, "kv_bytes_held": entry.bytes, "kv_bytes_dense": entry.dense_bytes}
        return Started(None, feed, info), entry.compressed

    def build(self, spec: specs.PipelineSpec, ids: list[int], prompt: Any = None) -> Entry:
        """The kv method on a context in llama.cpp: prefilled (reading what the method scores), compressed, saved."""
        method = spec.build("kv")
        start = time.perf_counter()
        pre = self.engine.prefill(ids, [method] if method is not None else [])
        compressed = self.engine.compress(pre, method)
        row = {"stage": "kv", "method": str(spec.get("kv") or "none"), "engine": "llamacpp",
               "entries_before": pre.n_tokens, "entries_after": int(compressed.kept), "bytes_before": pre.bytes,
               "bytes_after": compressed.bytes, "prefill_seconds": pre.seconds,
               "compress_seconds": compressed.compress_seconds, "seconds": time.perf_counter() - start}
        return Entry(compressed, len(ids), compressed.bytes, pre.bytes, [row])

    async def explain(self, body: Any) -> dict[str, Any]:
        raise APIError(501, "the compression page runs the torch engine: start tokenzip serve without --engine "
                       "llamacpp to use it", type="not_implemented_error", code="unsupported_engine")

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "mode": "llamacpp", "pid": os.getpid(), "compression": str(self.default_spec),
                "gguf": self.engine.model.path.name, "n_ctx": self.engine.n_ctx,
                "min_context_tokens": self.min_context_tokens, "max_batch": 1, "cache_entries": len(self.cache),
                "cache_bytes": self.cache.bytes, "cache_max_bytes": self.cache.max_bytes, "max_positions": self.limit}


def check_servable(spec: specs.PipelineSpec, param: str = "compression") -> None:
    """Only a kv method llama.cpp can run: anything else is a 400 that says what can."""
    from tokenzip.engines.llamacpp.engine import check_method

    other = [s.stage for s in spec.stages if s.stage != "kv"]
    if other:
        raise bad_request(f"the llama.cpp engine runs the kv stage only, not {', '.join(other)}: send a kv method "
                          "(e.g. kv:snapkv@0.5) or use the torch engine", param=param, code="unsupported_compression")
    try:
        check_method(spec.build("kv"))
    except TokenzipError as exc:
        raise bad_request(str(exc), param=param, code="unsupported_compression") from None


class Runner(ModelThread):
    """The llama.cpp thread, with the scheduler's interface (``submit``, ``call``, ``shutdown``) and events: one
    request at a time, each choice started from the request's context and sampled token by token. A token is
    taken, and a choice or request ended, by the scheduler's own code (:meth:`Scheduler._take_token`,
    :meth:`Scheduler._end`), so both engines report them alike."""

    _take_token = Scheduler._take_token
    _end = Scheduler._end

    def __init__(self, begin: Callable[[Any], tuple[Started, Compressed | None]], engine: Any, eos: set[int],
                 on_cancel: Callable[[], None] | None = None) -> None:
        self.begin, self.engine, self.eos, self.on_cancel = begin, engine, eos, on_cancel
        self._running: list[_Running] = []
        self._start_thread("tokenzip-llamacpp")

    def _loop(self) -> None:
        while True:
            kind, item, extra = self._inbox.get()
            if kind == "stop":
                return
            if kind == "call":
                self._run_call(item, extra)
                continue
            try:
                self._run(item, extra)
            except Exception as exc:  # this request's error (a 400 when it is tokenzip's), never the thread's
                self._running.clear()
                extra(("error", exc))

    def _run(self, job: Any, emit: Emit) -> None:
        if job.cancel.is_set():  # the client went away while it waited
            emit(("done", {"cancelled": True}))
            if self.on_cancel:
                self.on_cancel()
            return
        started, compressed = self.begin(job)
        r = _Running(job, emit, started, job.make_choices())
        self._running.append(r)
        for c in r.choices:
            if c.finish is not None:
                continue
            logits = self.engine.start(compressed, started.feed, job.max_tokens)
            while True:
                self._take_token(r, c, torch.from_numpy(logits))
                if c.finish is not None:
                    break
                if job.cancel.is_set():  # the client went away: this choice and those not run yet end here
                    for other in r.choices:
                        other.finish = other.finish or "cancelled"
                    if self.on_cancel:
                        self.on_cancel()
                    break
                r.decode_steps += 1
                r.batch_rows += 1
                logits = self.engine.step(c.tokens[-1])
        self._end(r)
