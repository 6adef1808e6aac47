"""``tokenzip serve --engine llamacpp``: the server's backend (:mod:`tokenzip.serve.protocol`) on llama.cpp's runtime
engine.

Requests are planned exactly as :class:`~tokenzip.serve.torch_backend.TorchBackend` plans them (the same
:class:`~tokenzip.serve.backend.ModelBackend`: the chat template, where compression applies, the context cache keyed
by the exact context ids and spec, every 4xx before any work) and streamed by the same code; only the model work
differs. A context is prefilled, compressed and saved in llama.cpp once
(:class:`tokenzip.engines.llamacpp.engine.LlamaCppEngine`: scores from llama.cpp's own tensors, one set of positions
evicted from every layer, the kept cells saved with ``llama_state_seq_get_data``), kept in the context cache as those
bytes, and restored for every later request about it; such a request reports the context's tokens in
``usage.prompt_tokens_details.cached_tokens``. The pipeline may hold one kv method that llama.cpp can run (a prompt or
layers stage, or another kv method, is a 400 naming the ones it can).

One thread owns the llama.cpp context and answers one request at a time (no batching: ``max_batch`` is 1); a
request's ``n`` choices run one after the other, each from the restored context, sampled by the server's own
:class:`~tokenzip.serve.generate.Choice` (temperature, top-p, penalties, seeds, log-probabilities, stops).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from tokenzip import engines
from tokenzip import spec as specs
from tokenzip.engines.base import Compressed
from tokenzip.engines.llamacpp.engine import check_method
from tokenzip.errors import TokenzipError
from tokenzip.models.loading import load_tokenizer
from tokenzip.pipeline import StageRecord
from tokenzip.serve.backend import DEFAULT_MIN_CONTEXT_TOKENS, Job, ModelBackend, parse_spec
from tokenzip.serve.cache import Entry
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.scheduler import Emit, ModelThread, Running, Started


class LlamaCppBackend(ModelBackend):
    """A GGUF in llama.cpp behind the server (see the module docstring). ``engine``: a
    :class:`tokenzip.engines.llamacpp.engine.LlamaCppEngine`; ``tokenizer``: the model's Hugging Face tokenizer
    (its chat template, and the text of each token for streaming and log-probabilities; its ids are the GGUF's)."""

    def __init__(self, engine: Any, tokenizer: Any, name: str, default_spec: str | None = None,
                 cache_bytes: int = 2 << 30, min_context_tokens: int = DEFAULT_MIN_CONTEXT_TOKENS,
                 metrics: Metrics | None = None, chat_max_tokens: int = 256) -> None:
        self.engine = engine
        super().__init__(tokenizer, name, engine, engine.limit, engine.model.n_vocab, default_spec=default_spec,
                         cache_bytes=cache_bytes, max_batch=1, min_context_tokens=min_context_tokens, metrics=metrics,
                         chat_max_tokens=chat_max_tokens)
        self.eos = self.end_ids({t for t in range(self.vocab_size) if engine.model.is_end(t)})
        self.scheduler = Runner(self.begin, self.engine, self.eos, on_cancel=self.metrics.cancelled.inc)

    @classmethod
    def load(cls, model: str, n_ctx: int | None = None, threads: int | None = None, **options: Any
             ) -> LlamaCppBackend:
        """The packaged GGUF of ``model`` (``gemma-3-270m``, ``smollm2-135m``) and its tokenizer."""
        check_servable(parse_spec(options.get("default_spec"), specs.PipelineSpec(), param="--compression"),
                       "--compression")  # before loading anything
        if str(model).endswith(".gguf"):
            raise TokenzipError("tokenzip serve --engine llamacpp serves a packaged model by its short name "
                                "(gemma-3-270m, smollm2-135m): it needs the model's tokenizer and chat template too")
        return cls(engines.load_engine("llamacpp", model, n_ctx=n_ctx, threads=threads), load_tokenizer(model), model,
                   **options)

    # --- preparing ----------------------------------------------------------------------------------------
    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        check_servable(spec, param)

    # --- the llama.cpp thread ------------------------------------------------------------------------------
    def begin(self, job: Job) -> tuple[Started, Compressed | None]:
        """What a request starts from (:meth:`~tokenzip.serve.backend.ModelBackend.open`), for the runner."""
        compressed, feed, info = self.open(job)
        return Started(None, feed, info), compressed

    def build(self, spec: specs.PipelineSpec, ids: list[int], prompt: Any = None) -> Entry:
        """The kv method on a context in llama.cpp: prefilled (reading what the method scores), compressed, saved."""
        method = spec.build("kv")
        pre = self.engine.prefill(ids, [method] if method is not None else [])
        compressed = self.engine.compress(pre, method)
        records = [] if method is None else [StageRecord("kv", str(spec.get("kv")), "entries", pre.n_tokens,
                                                         compressed.kept, compressed.compress_seconds,
                                                         compressed.bytes, compressed.kept)]
        return Entry(compressed, len(ids), compressed.bytes, pre.bytes, records, pre.seconds)

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
    request at a time, each choice started from the request's context and sampled token by token (a token taken, a
    request ended or cancelled by :class:`~tokenzip.serve.scheduler.ModelThread`'s code, as in the scheduler)."""

    def __init__(self, begin: Callable[[Any], tuple[Started, Compressed | None]], engine: Any, eos: set[int],
                 on_cancel: Callable[[], None] | None = None) -> None:
        self.begin, self.engine, self.eos, self.on_cancel = begin, engine, eos, on_cancel
        self._running: list[Running] = []
        self._start_thread("tokenzip-llamacpp")

    def _loop(self) -> None:
        while True:
            verb, item, extra = self._inbox.get()
            if verb == "stop":
                return
            if verb == "call":
                self._run_call(item, extra)
                continue
            try:
                self._run(item, extra)
            except Exception as exc:  # this request's error (a 400 when it is tokenzip's), never the thread's
                self._running.clear()
                extra(("error", exc))

    def _run(self, job: Any, emit: Emit) -> None:
        if job.cancel.is_set():  # the client went away while it waited
            self.drop_waiting(emit)
            return
        started, compressed = self.begin(job)
        r = Running(job, emit, started, job.make_choices())
        self._running.append(r)
        for c in r.choices:
            if c.finish is not None:
                continue
            logits = self.engine.start(compressed, started.feed, job.max_tokens)
            while True:
                self.take_token(r, c, torch.from_numpy(logits))
                if c.finish is not None:
                    break
                if job.cancel.is_set():  # the client went away: this choice and those not run yet end here
                    self.cancel_running(r)
                    return
                r.decode_steps += 1
                r.batch_rows += 1
                logits = self.engine.step(c.tokens[-1])
        self.end(r)
