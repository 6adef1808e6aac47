"""Proxy mode: the prompt stage in front of any OpenAI-compatible server (vLLM, SGLang, llama.cpp, a hosted API).

The request's documents (the context, by the rule in :mod:`tokenzip.serve.split`) are compressed
question-aware with a local scorer (the question is the last paragraph of the last user message), the
request is forwarded with the compressed documents (streaming passed through line by line), and the
upstream's ``usage`` gains tokenzip's ``compression`` block (also sent as the ``x-tokenzip-compression``
header, so a stream without usage still reports it). Token counts are on the scorer's tokenizer.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from tokenzip import spec as specs
from tokenzip.errors import TokenzipError
from tokenzip.serve.engine import compress_documents, parse_spec
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.schemas import ChatMessage, error_param
from tokenzip.serve.split import Prompt, chat_prompt, completion_prompt
from tokenzip.textio import check_text


class Proxy:
    """Compresses documents locally, forwards to ``upstream`` (a base URL ending in ``/v1``)."""

    def __init__(self, upstream: str, model: Any, tokenizer: Any, name: str = "upstream",
                 compression: str | None = None, max_queue: int = 64, timeout: float = 600.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.model, self.tok, self.name = model, tokenizer, name
        self.default_spec = parse_spec(compression, specs.PipelineSpec(), param="--compression")
        self.check_servable(self.default_spec, "--compression")
        self.metrics = Metrics()
        self.max_queue = max_queue
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tokenzip-scorer")
        self._pending = 0
        self._lock = threading.Lock()

    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        extra = [str(s) for s in spec.stages if s.stage != "prompt"]
        if extra:
            raise bad_request(f"{' | '.join(extra)}: proxy mode runs the prompt stage only (the upstream server "
                              "owns the model and its cache)", param=param, code="unsupported_compression")

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "mode": "proxy", "upstream": self.upstream,
                "compression": str(self.default_spec), "queue": self._pending, "max_queue": self.max_queue}

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        """Run scorer work on the scorer's own thread."""
        return asyncio.wrap_future(self._executor.submit(fn, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _admit(self) -> None:
        with self._lock:
            if self._pending >= self.max_queue:
                self.metrics.rejected.inc()
                raise APIError(429, f"the proxy is busy ({self._pending} requests in flight)", type="rate_limit_error",
                               code="queue_full", headers={"Retry-After": "1"})
            self._pending += 1

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    # --- one request ---------------------------------------------------------------------------------
    async def handle(self, request: Request, kind: str) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise bad_request(f"the body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object", code="invalid_json")
        try:
            check_text(body, "the body")
        except TokenzipError as exc:
            raise bad_request(str(exc), code="invalid_text") from None
        spec = parse_spec(body.pop("compression", None), self.default_spec)
        self.check_servable(spec)
        prompt = self._prompt(body, kind)
        self._admit()
        released = False
        try:
            block = await self._compress(body, prompt, spec)
            url = f"{self.upstream}/{'chat/completions' if kind == 'chat' else 'completions'}"
            header = {"x-tokenzip-compression": json.dumps(block)}
            if body.get("stream"):
                released = True
                return StreamingResponse(self._stream(url, body, block), media_type="text/event-stream",
                                         headers=header)
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                try:
                    r = await client.post(url, json=body)
                except httpx.HTTPError as exc:
                    raise APIError(502, f"upstream {self.upstream} failed: {exc}", type="upstream_error") from None
            try:
                data = r.json()
            except ValueError:
                return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))
            if r.status_code == 200 and isinstance(data.get("usage"), dict):
                self._account(data["usage"], block)
            return JSONResponse(data, status_code=r.status_code, headers=header)
        finally:
            if not released:
                self._release()

    def _prompt(self, body: dict[str, Any], kind: str) -> Prompt:
        try:
            if kind == "chat":
                messages = [ChatMessage.model_validate(m) for m in body.get("messages") or []]
                if not any(m.role == "user" for m in messages):
                    raise bad_request("messages need at least one user message", param="messages")
                return chat_prompt([{"role": m.role, "content": m.text()} for m in messages])
        except ValidationError as exc:
            first = exc.errors()[0]
            raise bad_request(f"messages: {first['msg']}",
                              param="messages." + (error_param(first["loc"]) or "")) from None
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        context = body.get("context")
        if not isinstance(prompt, str) or not (context is None or isinstance(context, str)):
            raise bad_request("prompt must be a string (and context, when given, a string)", param="prompt")
        return completion_prompt(prompt, context)

    async def _compress(self, body: dict[str, Any], prompt: Prompt, spec: specs.PipelineSpec) -> dict[str, Any]:
        """Compress the documents (question-aware) and rewrite ``body`` in place; returns the usage block."""
        block: dict[str, Any] = {"spec": str(spec), "stages": []}
        pm = spec.get("prompt")
        docs = prompt.documents
        if pm is not None and docs:
            try:
                docs, row = await self.call(compress_documents, self.model, self.tok, docs, prompt.question, pm)
            except TokenzipError as exc:
                raise bad_request(str(exc), param="compression") from None
            block["stages"].append(row)
            self.metrics.record_stages([row])
        if prompt.kind == "chat":
            body["messages"] = prompt.chat_messages(docs)
        else:
            body.pop("context", None)
            body["prompt"] = (docs[0] if docs else "") + prompt.question
        return block

    def _account(self, usage: dict[str, Any], block: dict[str, Any]) -> None:
        usage["compression"] = block
        self.metrics.upstream_tokens.inc(usage.get("prompt_tokens") or 0)
        self.metrics.completion_tokens.inc(usage.get("completion_tokens") or 0)

    async def _stream(self, url: str, body: dict[str, Any], block: dict[str, Any]) -> AsyncIterator[str]:
        start = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                async with client.stream("POST", url, json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {") and '"usage"' in line:
                            event = json.loads(line[6:])
                            if isinstance(event.get("usage"), dict):
                                self._account(event["usage"], block)
                                line = "data: " + json.dumps(event)
                        yield line + "\n"
        except httpx.HTTPError as exc:
            err = {"error": {"message": f"upstream failed: {exc}", "type": "upstream_error", "param": None,
                             "code": None}}
            yield f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n"
        finally:
            self._release()
            self.metrics.latency.labels("proxy-stream").observe(time.perf_counter() - start)

