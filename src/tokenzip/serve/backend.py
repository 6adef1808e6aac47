r"""Model backends: a runtime engine (:mod:`tokenzip.engines`) behind the server, with compression per request and a
compressed context cache. :class:`ModelBackend` is what the torch backend (:mod:`tokenzip.serve.torch_backend`) and the
llama.cpp one (:mod:`tokenzip.serve.llamacpp`) share: planning a request, the context cache, streaming, the usage.

A request is *prepared* (checked and tokenized, off the model thread: any error is a 4xx before model work),
then run on the model thread (the torch backend's :class:`~tokenzip.serve.scheduler.Scheduler`, batched with the
requests that arrive with it; llama.cpp's runner, one at a time).

**Where compression pays.** The pipeline (the request's ``compression``, else the server default) applies to
the reusable part of a request, its *context* (:mod:`tokenzip.serve.split`: documents, system text, earlier
turns), when the context holds at least ``min_context_tokens`` tokens (default 512): the context is then
prefilled and compressed once, query-agnostically, kept in the context cache and reused by later requests
with the same context. A shorter prompt is answered whole, exactly as with ``compression: "none"``: a
compression step on it costs more than it saves, and there is nothing worth caching. A request that names a
``compression`` itself gets it whatever the length. ``usage.compression`` says which happened (``spec``:
what was applied; ``requested`` and ``source``: what was asked; ``skipped``: why it was not applied).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from tokenzip import spec as specs
from tokenzip.engines.base import Compressed
from tokenzip.errors import TokenzipError
from tokenzip.ops.sampling import SamplingParams
from tokenzip.pipeline import Pipeline, StageRecord
from tokenzip.serve.cache import ContextCache, Entry
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.generate import Choice, Detokenizer
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.responses import Shape, assemble
from tokenzip.serve.scheduler import Started
from tokenzip.serve.schemas import ChatRequest, CompletionRequest, parse
from tokenzip.serve.split import TURN_MARKERS, Prompt, chat_prompt, completion_prompt

DEFAULT_MIN_CONTEXT_TOKENS = 512


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
    """One prepared request. ``mode``: ``context`` (the context is prefilled, compressed and cached; the question
    is fed after it), ``prompt`` (a short prompt the request asked to compress: all but its last token), or
    ``whole`` (the prompt is fed as it is)."""

    shape: Shape
    prompt: Prompt
    spec: specs.PipelineSpec  # applied
    requested: specs.PipelineSpec
    source: str  # "request" or "default"
    skipped: str | None
    mode: str
    context_ids: list[int]
    question_ids: list[int]
    max_tokens: int
    n: int
    params: SamplingParams
    seed: int | None
    top_logprobs: int | None
    stops: list[str]
    markers: tuple[str, ...]
    key: tuple | None  # context cache key
    tokenizer: Any
    stream: bool = False
    include_usage: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.perf_counter)

    @property
    def prompt_tokens(self) -> int:
        return len(self.context_ids) + len(self.question_ids)

    def make_choices(self) -> list[Choice]:
        return [Choice.make(i, self.params, Detokenizer(self.tokenizer, self.stops, self.markers), self.seed,
                            self.top_logprobs) for i in range(self.n)]


class ModelBackend:
    """What the backends that run a model in-process share (see the module docstring): planning a request, the
    context cache, the events of the model thread as OpenAI chunks, and the usage. A subclass gives the runtime
    (``engine``, an :class:`tokenzip.engines.base.Engine`), :meth:`build` (a context compressed) and the model
    thread (``scheduler``, with ``eos``)."""

    engine: Any
    scheduler: Any
    eos: set[int]

    def __init__(self, tokenizer: Any, name: str, front: Any, limit: int, vocab_size: int,
                 default_spec: str | None = None, cache_bytes: int = 2 << 30, max_batch: int = 8,
                 min_context_tokens: int = DEFAULT_MIN_CONTEXT_TOKENS, metrics: Metrics | None = None,
                 chat_max_tokens: int = 256) -> None:
        self.tok, self.name = tokenizer, name
        self.front = front  # the engine that tokenizes a request off the model thread (``encode``)
        self.front_lock = threading.Lock()
        self.default_spec = parse_spec(default_spec, specs.PipelineSpec(), param="--compression")
        self.check_servable(self.default_spec, "--compression")
        self.cache = ContextCache(cache_bytes)
        self.metrics = metrics or Metrics()
        self.max_batch, self.min_context_tokens, self.chat_max_tokens = max_batch, min_context_tokens, chat_max_tokens
        self.limit, self.vocab_size = limit, vocab_size
        # the longest text one token can stand for: a prompt longer than limit * this cannot fit, untokenized
        self.max_token_chars = max((len(piece) for piece in tokenizer.get_vocab()), default=1)
        self.templated = bool(getattr(tokenizer, "chat_template", None))

    def end_ids(self, eos: set[int]) -> set[int]:
        """The runtime's end-of-generation ids, with the chat template's end of turn."""
        if self.templated and self.tok.eos_token_id is not None:
            eos = eos | {self.tok.eos_token_id}
        return eos

    # --- preparing (the event loop, and a worker thread for tokenizing) ------------------------------
    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        """A pipeline this backend cannot run is a 400 (raised before any work)."""

    async def prepare(self, endpoint: str, body: Any) -> Job:
        req = parse(ChatRequest if endpoint == "chat" else CompletionRequest, body)
        req.check()
        if req.model != self.name:
            raise APIError(404, f"The model {req.model!r} does not exist: this server serves {self.name!r} "
                           "(GET /v1/models)", param="model", code="model_not_found")
        spec = parse_spec(req.compression, self.default_spec)
        self.check_servable(spec)
        return await run_in_threadpool(self.plan, endpoint, req, spec)

    def encode(self, text: str, special: bool) -> list[int]:
        """The runtime's token ids of ``text`` (``special``: as a prompt starts)."""
        if not text:
            return []
        with self.front_lock:
            return self.front.tokenize(text, special)

    def plan(self, endpoint: str, req: ChatRequest | CompletionRequest, spec: specs.PipelineSpec) -> Job:
        """Tokenize a request, decide where compression applies, check the lengths; raises :class:`APIError`."""
        chat = endpoint == "chat"
        prompt = chat_prompt(req.plain_messages(), self.tok if self.templated else None) if chat else \
            completion_prompt(req.text, req.context)
        context_text, question_text = prompt.render()
        if not question_text.strip() and not context_text:
            raise bad_request("the prompt is empty", param="prompt")
        chars = len(context_text) + len(question_text)
        if self.limit and chars > self.limit * self.max_token_chars:  # refused before tokenizing it all
            raise bad_request(
                f"This model's maximum context length is {self.limit} tokens; the prompt's {chars} characters make "
                f"more than that (no token of this model holds more than {self.max_token_chars} characters). Please "
                "reduce the length of the prompt, or compress it before sending.",
                param="messages" if chat else "prompt", code="context_length_exceeded")
        special = not prompt.templated
        context_ids = self.encode(context_text, special)
        question_ids = self.encode(question_text, special and not context_ids)
        if not question_ids:
            raise bad_request("the question is empty: with a context field, the prompt holds the question",
                              param="prompt")
        n = len(context_ids) + len(question_ids)
        limit = req.completion_limit if chat else req.max_tokens
        if limit is None:
            limit = max(1, min(self.chat_max_tokens, self.limit - n)) if self.limit else self.chat_max_tokens
        if self.limit and n + limit > self.limit:
            raise bad_request(
                f"This model's maximum context length is {self.limit} tokens. However, you requested "
                f"{n + limit} tokens ({n} in the prompt, {limit} in the completion). Please reduce the "
                "length of the prompt or the completion, or compress it before sending.",
                param="messages" if chat else "prompt", code="context_length_exceeded")
        source = "request" if req.compression is not None else "default"
        mode, applied, skipped = self._where(spec, source, context_ids, question_ids)
        key = None
        if mode == "context":
            pm = spec.build("prompt")
            aware = question_text if pm is not None and getattr(pm, "question_aware", False) else None
            key = (self.name, tuple(context_ids), str(spec), aware)
        return Job(Shape(endpoint), prompt, applied, spec, source, skipped, mode, context_ids, question_ids, limit,
                   req.choices, req.sampling(self.vocab_size), req.seed, req.top_logprobs_count, req.stops(),
                   TURN_MARKERS if chat and not prompt.templated else (), key, self.tok, stream=bool(req.stream),
                   include_usage=req.include_usage)

    def _where(self, spec: specs.PipelineSpec, source: str, context_ids: list[int],
               question_ids: list[int]) -> tuple[str, specs.PipelineSpec, str | None]:
        """Where the pipeline applies: ``(mode, applied spec, why it was not applied)`` (see :class:`Job`)."""
        if context_ids and (len(context_ids) >= self.min_context_tokens or source == "request"):
            return "context", spec, None
        if source == "request" and spec and len(context_ids) + len(question_ids) >= 2:
            return "prompt", spec, None
        skipped = None
        if spec:
            skipped = (f"the context ({len(context_ids)} tokens) is shorter than the server's min_context_tokens "
                       f"({self.min_context_tokens}): the prompt is answered whole; send compression to apply it")
        return "whole", specs.PipelineSpec(), skipped

    # --- answering (the event loop) --------------------------------------------------------------------
    async def stream(self, job: Job) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self.scheduler.submit(job, lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
        head = job.shape.head(self.name, stream=True)
        announced, done = set(), False
        try:
            while True:
                event = await events.get()
                if event[0] == "error":
                    done = True
                    exc = event[1]
                    raise bad_request(str(exc)) if isinstance(exc, TokenzipError) else exc
                if event[0] == "done":
                    done = True
                    if not event[1].get("cancelled"):
                        yield {**head, "choices": [], "usage": self._usage(job, event[1])}
                    return
                index = event[1]
                if job.shape.chat and index not in announced:
                    announced.add(index)
                    yield {**head, "choices": [job.shape.role_choice(index)]}
                if event[0] == "piece":
                    _, _, text, logprobs = event
                    choice = job.shape.chunk_choice(index, text, logprobs if job.top_logprobs is not None else None)
                else:
                    choice = job.shape.chunk_choice(index, None, None, "stop" if event[2] == "cancelled" else event[2])
                yield {**head, "choices": [choice]}
        finally:
            if not done:
                job.cancel.set()  # the client went away: the scheduler drops the request at its next step

    async def complete(self, job: Job) -> dict[str, Any]:
        return await assemble(self.stream(job))

    def _usage(self, job: Job, stats: dict[str, Any]) -> dict[str, Any]:
        started: Started = stats["started"]
        info = started.info
        cached = info.get("cache") == "hit"
        completion = stats["completion_tokens"]
        compression = {
            "spec": str(job.spec), "requested": str(job.requested), "source": job.source, "skipped": job.skipped,
            "context_tokens": len(job.context_ids), "question_tokens": len(job.question_ids),
            "cache": info.get("cache", "none"), "stages": info.get("stages", []),
            "kv_bytes_held": info.get("kv_bytes_held", 0), "kv_bytes_dense": info.get("kv_bytes_dense", 0),
            "prefill_seconds": info.get("prefill_seconds", 0.0),
            "time_to_first_token_seconds": stats["first_token_at"] - job.started,
            "queue_seconds": stats["began"] - job.started, "seconds": stats["ended"] - job.started,
            "batch_size_mean": stats["batch_size_mean"],
        }
        return {"prompt_tokens": job.prompt_tokens, "completion_tokens": completion,
                "total_tokens": job.prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": len(job.context_ids) if cached else 0},
                "compression": compression}

    # --- the model thread -------------------------------------------------------------------------------
    def open(self, job: Job) -> tuple[Compressed | None, list[int], dict[str, Any]]:
        """What a request starts from: its compressed context (cached or built now; None: nothing, the whole prompt
        is fed), the tokens to feed after it, and what its usage reports."""
        if job.mode == "whole":
            return None, job.context_ids + job.question_ids, {"cache": "none"}
        entry, outcome = self._context(job)
        cached = outcome == "hit"
        stages = [dict(record.to_dict(), cached=cached, **({"seconds": 0.0} if cached else {}))
                  for record in entry.stages]
        self.metrics.cache_bytes.set(self.cache.bytes)
        self.metrics.cache_entries.set(len(self.cache))
        feed = job.question_ids if job.mode == "context" else job.question_ids[-1:]
        return entry.compressed, feed, {"cache": outcome, "stages": stages, "kv_bytes_held": entry.bytes,
                                        "kv_bytes_dense": entry.dense_bytes,
                                        "prefill_seconds": 0.0 if cached else entry.prefill_seconds}

    def _context(self, job: Job) -> tuple[Entry, str]:
        """The compressed context (a cache hit, or built now) and the cache outcome: hit, miss, off or none."""
        if job.key is not None and self.cache.max_bytes:
            entry = self.cache.get(job.key)
            (self.metrics.cache_hits if entry is not None else self.metrics.cache_misses).inc()
            if entry is not None:
                return entry, "hit"
        entry = self.build(job.spec, job.context_ids if job.mode == "context" else job.question_ids[:-1],
                           job.prompt if job.mode == "context" else None)
        if job.key is None:
            return entry, "none"
        return entry, "miss" if self.cache.put(job.key, entry) else "off"

    def build(self, spec: specs.PipelineSpec, ids: list[int], prompt: Prompt | None = None) -> Entry:
        """The pipeline on a context's ids (``prompt``: its documents, for a prompt stage), as a cache entry."""
        raise NotImplementedError

    def shutdown(self) -> None:
        self.scheduler.shutdown()


def compress_documents(model: Any, tok: Any, docs: list[str], question: str | None,
                       pipe: Pipeline) -> tuple[list[str], StageRecord]:
    """The prompt stage on each document, question-aware; returns the new documents and the stage's record (the
    documents' counts and seconds summed)."""
    out, before, after, seconds = [], 0.0, 0.0, 0.0
    for doc in docs:
        result, record = pipe.compress_prompt(model, tok, doc, question)
        text = doc if result is None else result.text
        out.append(text.rstrip() + doc[len(doc.rstrip()):])  # keep the separator before the question
        if record is not None:
            before, after, seconds = before + record.before, after + record.after, seconds + record.seconds
    return out, StageRecord("prompt", str(pipe.spec.get("prompt")), "tokens", before, after, seconds)
