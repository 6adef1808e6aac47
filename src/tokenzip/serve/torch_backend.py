r"""The torch backend: a transformers model on :class:`~tokenzip.engines.torch.TorchEngine` behind the server, with
batching (:mod:`tokenzip.serve.scheduler`), compression per request and the context cache
(:class:`~tokenzip.serve.backend.ModelBackend`).

A context is compressed by the pipeline's own steps, :meth:`tokenzip.pipeline.Pipeline.compress_prompt` (on each
document, question-aware) and :meth:`tokenzip.pipeline.Pipeline.compress_context` (the prefill with the layers
method, then the kv method), as ``tz.pipeline(...).run`` does; the rows reported are their
:class:`~tokenzip.pipeline.StageRecord`\ s, and the cache entry is the engine's
:class:`~tokenzip.engines.base.Compressed` (:meth:`~tokenzip.engines.torch.TorchEngine.hold`). What runs on the engine:
tokenizing, holding a compressed context, and the page's greedy answers (``generate``); requests decode on the
scheduler's batch path (what it does that the engine protocol does not: :mod:`tokenzip.serve.scheduler`). A context is
kept in the cache as the object itself, not ``TorchEngine.save``'s bytes: in one process, serialising it on every hit
would cost time and save nothing.
"""

from __future__ import annotations

import asyncio
import copy
import os
from typing import Any

import torch

from tokenzip import spec as specs
from tokenzip.engines.torch import TorchEngine
from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import eos_ids
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.models.rows import Row
from tokenzip.pipeline import Pipeline, StageRecord
from tokenzip.serve.backend import DEFAULT_MIN_CONTEXT_TOKENS, Job, ModelBackend, compress_documents, parse_spec
from tokenzip.serve.cache import Entry
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.page import explain
from tokenzip.serve.scheduler import Scheduler, Started
from tokenzip.serve.schemas import CompressRequest, parse
from tokenzip.serve.split import Prompt


class TorchBackend(ModelBackend):
    """A transformers model on :class:`~tokenzip.engines.torch.TorchEngine`, its context cache, and the batching
    model thread (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, default_spec: str | None = None,
                 cache_bytes: int = 2 << 30, max_batch: int = 8, min_context_tokens: int = DEFAULT_MIN_CONTEXT_TOKENS,
                 metrics: Metrics | None = None, chat_max_tokens: int = 256) -> None:
        self.model = model
        self.engine = TorchEngine(model, tokenizer)
        front = TorchEngine(model, copy.deepcopy(tokenizer))  # preparing tokenizes off the model thread, own copy
        limit = DecoderAdapter(model).max_positions or getattr(model.config, "max_position_embeddings", 0)
        super().__init__(tokenizer, name, front, limit, model.get_output_embeddings().weight.shape[0],
                         default_spec=default_spec, cache_bytes=cache_bytes, max_batch=max_batch,
                         min_context_tokens=min_context_tokens, metrics=metrics, chat_max_tokens=chat_max_tokens)
        self.eos = self.end_ids(eos_ids(model))
        self.scheduler = Scheduler(model, self.start, self.eos, max_batch, on_step=self._on_step,
                                   on_cancel=self.metrics.cancelled.inc)

    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        """A layers method the served model cannot take (e.g. an encoder method on a decoder) is a 400."""
        if spec.get("layers") is not None:
            try:
                Pipeline(spec.without("prompt", "kv")).check(self.model)
            except TokenzipError as exc:
                raise bad_request(f"{spec.get('layers')}: {exc}", param=param,
                                  code="unsupported_compression") from None

    async def explain(self, body: Any) -> dict[str, Any]:
        req = parse(CompressRequest, body)
        if req.model is not None and req.model != self.name:
            raise APIError(404, f"The model {req.model!r} does not exist: this server serves {self.name!r}",
                           param="model", code="model_not_found")
        spec = parse_spec(req.compression, self.default_spec)
        self.check_servable(spec)
        try:
            return await asyncio.wrap_future(self.scheduler.call(explain, self, req, spec))
        except TokenzipError as exc:
            raise bad_request(str(exc), param="text") from None

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "mode": "local", "pid": os.getpid(), "compression": str(self.default_spec),
                "min_context_tokens": self.min_context_tokens, "max_batch": self.max_batch,
                "cache_entries": len(self.cache), "cache_bytes": self.cache.bytes,
                "cache_max_bytes": self.cache.max_bytes, "max_positions": self.limit}

    # --- the model thread -------------------------------------------------------------------------------
    def start(self, job: Job) -> Started:
        """The row a request runs in and the tokens to feed it: after its (cached or new) compressed context, or
        an empty row fed the whole prompt."""
        compressed, feed, info = self.open(job)
        if compressed is None:
            return Started(Row.empty(self.model), feed, info)
        c = compressed.state
        return Started(Row.after(c.cache, c.masks, c.seen), feed, info)

    def build(self, spec: specs.PipelineSpec, ids: list[int], prompt: Prompt | None = None) -> Entry:
        """The pipeline on a context: the prompt stage on ``prompt``'s documents (question-aware), then the prefill
        (the layers method pruning inside the model) and the kv method's compression (query-agnostic)."""
        pipe = Pipeline(spec)
        records: list[StageRecord] = []
        if pipe.method("prompt") is not None and prompt is not None and prompt.documents:
            docs, record = compress_documents(self.model, self.tok, prompt.documents, prompt.question, pipe)
            context_text, _ = prompt.render(docs)
            ids = self.engine.tokenize(context_text, not prompt.templated)
            records.append(record)
        pre, compressed, model_records = pipe.compress_context(self.model, self.tok,
                                                               torch.tensor([ids], device=self.engine.device))
        held = self.engine.hold(compressed)
        return Entry(held, len(ids), held.bytes, pre.bytes, records + model_records, pre.seconds)

    def _on_step(self, rows: int) -> None:
        self.metrics.batch_rows.observe(rows)
