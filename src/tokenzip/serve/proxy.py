"""Proxy mode: the prompt stage in front of any OpenAI-compatible server (vLLM, SGLang, llama.cpp, a hosted API).

A :class:`~tokenzip.serve.protocol.Backend` with no runtime engine: its model is upstream. The request's documents
(the context, by the rule in :mod:`tokenzip.serve.split`) are compressed question-aware with a local scorer
(the question is the last paragraph of the last user message), the request is forwarded with the compressed documents
and every other field as the client sent it (the upstream implements sampling, tools, ...), and the upstream's
answer comes back as it was, its ``usage`` kept with tokenzip's ``compression`` block added (the upstream's
own ``usage.compression``, when it is a tokenzip server, moves to ``compression.upstream``). The block is also
sent as the ``x-tokenzip-compression`` header, so a stream without usage still reports it. Token counts are on
the scorer's tokenizer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from tokenzip import spec as specs
from tokenzip.errors import TokenzipError
from tokenzip.pipeline import Pipeline
from tokenzip.serve.backend import compress_documents, parse_spec
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.page import explain_prompt
from tokenzip.serve.schemas import ChatMessage, CompressRequest, error_param, parse
from tokenzip.serve.split import Prompt, chat_prompt, completion_prompt


@dataclass
class ProxyJob:
    """A request to forward: the body (rewritten once its documents are compressed) and its pipeline."""

    endpoint: str
    body: dict[str, Any]
    prompt: Prompt
    spec: specs.PipelineSpec
    stream: bool
    include_usage: bool
    headers: dict[str, str] = field(default_factory=dict)
    block: dict[str, Any] = field(default_factory=dict)


class ProxyBackend:
    """Compresses documents locally with ``model``/``tokenizer``, forwards to ``upstream`` (a base URL ending in
    ``/v1``)."""

    def __init__(self, upstream: str, model: Any, tokenizer: Any, name: str = "upstream",
                 compression: str | None = None, metrics: Metrics | None = None, timeout: float = 600.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.model, self.tok, self.name = model, tokenizer, name
        self.default_spec = parse_spec(compression, specs.PipelineSpec(), param="--compression")
        self.check_servable(self.default_spec, "--compression")
        self.metrics = metrics or Metrics()
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tokenzip-scorer")

    def check_servable(self, spec: specs.PipelineSpec, param: str = "compression") -> None:
        extra = [str(s) for s in spec.stages if s.stage != "prompt"]
        if extra:
            raise bad_request(f"{' | '.join(extra)}: proxy mode runs the prompt stage only (the upstream server "
                              "owns the model and its cache)", param=param, code="unsupported_compression")

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "mode": "proxy", "upstream": self.upstream, "compression": str(self.default_spec)}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _scorer(self, fn: Any, *args: Any) -> Any:
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    # --- the protocol ------------------------------------------------------------------------------------
    async def prepare(self, endpoint: str, body: Any) -> ProxyJob:
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object", code="invalid_json")
        body = dict(body)
        spec = parse_spec(body.pop("compression", None), self.default_spec)
        self.check_servable(spec)
        prompt = _prompt(body, endpoint)
        stream = bool(body.get("stream"))
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        include_usage = bool(options.get("include_usage"))
        if stream:  # ask for usage anyway: the routes count it, and pass it on only when the client asked
            body["stream_options"] = {**options, "include_usage": True}
        return ProxyJob(endpoint, body, prompt, spec, stream, include_usage)

    async def complete(self, job: ProxyJob) -> dict[str, Any]:
        await self._compress(job)
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            try:
                r = await client.post(self._url(job), json=job.body)
            except httpx.HTTPError as exc:
                raise APIError(502, f"upstream {self.upstream} failed: {exc}", type="upstream_error") from None
        data = _json(r)
        if r.status_code != 200:
            raise _upstream_error(r.status_code, data)
        if isinstance(data.get("usage"), dict):
            self._account(data["usage"], job.block)
        return data

    async def stream(self, job: ProxyJob) -> AsyncIterator[dict[str, Any]]:
        await self._compress(job)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                async with client.stream("POST", self._url(job), json=job.body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        raise _upstream_error(r.status_code, _json(r))
                    async for line in r.aiter_lines():
                        data = line[5:].strip() if line.startswith("data:") else ""
                        if not data:
                            continue
                        if data == "[DONE]":
                            return
                        event = json.loads(data)
                        if "error" in event:
                            raise _upstream_error(502, event)
                        if isinstance(event.get("usage"), dict):
                            self._account(event["usage"], job.block)
                        yield event
        except httpx.HTTPError as exc:
            raise APIError(502, f"upstream {self.upstream} failed: {exc}", type="upstream_error") from None

    async def explain(self, body: Any) -> dict[str, Any]:
        req = parse(CompressRequest, body)
        spec = parse_spec(req.compression, self.default_spec)
        self.check_servable(spec)
        try:
            return await self._scorer(explain_prompt, self.model, self.tok, req, spec)
        except TokenzipError as exc:
            raise bad_request(str(exc), param="text") from None

    # --- steps -------------------------------------------------------------------------------------------
    def _url(self, job: ProxyJob) -> str:
        return f"{self.upstream}/{'chat/completions' if job.endpoint == 'chat' else 'completions'}"

    async def _compress(self, job: ProxyJob) -> None:
        """Compress the documents (question-aware), rewrite the body, fill the job's compression block and header."""
        block: dict[str, Any] = {"spec": str(job.spec), "stages": []}
        docs = job.prompt.documents
        if job.spec.get("prompt") is not None and docs:
            try:
                docs, row = await self._scorer(compress_documents, self.model, self.tok, docs, job.prompt.question,
                                               Pipeline(job.spec))
            except TokenzipError as exc:
                raise bad_request(str(exc), param="compression") from None
            block["stages"].append(row.to_dict())
        if job.prompt.endpoint == "chat":
            job.body["messages"] = job.prompt.chat_messages(docs)
        else:
            job.body.pop("context", None)
            job.body["prompt"] = (docs[0] if docs else "") + job.prompt.question
        job.block = block
        job.headers["x-tokenzip-compression"] = json.dumps(block)

    def _account(self, usage: dict[str, Any], block: dict[str, Any]) -> None:
        """Add tokenzip's block to the upstream's usage, keeping the upstream's own."""
        upstream_block = usage.get("compression")
        usage["compression"] = dict(block, upstream=upstream_block) if upstream_block is not None else dict(block)
        self.metrics.upstream_tokens.inc(usage.get("prompt_tokens") or 0)


def _prompt(body: dict[str, Any], endpoint: str) -> Prompt:
    """The documents and question of a forwarded request (only the fields the prompt stage reads are checked)."""
    if endpoint == "chat":
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise bad_request("messages: a non-empty list of messages is required", param="messages")
        messages = []
        for i, m in enumerate(raw):
            try:
                messages.append(ChatMessage.model_validate(m))
            except ValidationError as exc:
                first = exc.errors()[0]
                param = f"messages.{i}" + (f".{error_param(first['loc'])}" if error_param(first["loc"]) else "")
                raise bad_request(f"{param}: {first['msg']}", param=param) from None
        if not any(m.role == "user" for m in messages):
            raise bad_request("messages need at least one user message", param="messages")
        return chat_prompt([{"role": m.role, "content": m.text()} for m in messages])
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    context = body.get("context")
    if not isinstance(prompt, str) or not (context is None or isinstance(context, str)):
        raise bad_request("prompt must be a string (and context, when given, a string)", param="prompt")
    return completion_prompt(prompt, context)


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        raise APIError(502, f"upstream answered {r.status_code} with a body that is not JSON: {r.text[:200]!r}",
                       type="upstream_error") from None
    if not isinstance(data, dict):
        raise APIError(502, "upstream answered JSON that is not an object", type="upstream_error")
    return data


def _upstream_error(status: int, data: dict[str, Any]) -> APIError:
    """The upstream's error, with its status, message, type, param and code."""
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    message = error.get("message") or data.get("detail") or json.dumps(data)[:500]
    return APIError(status, f"upstream: {message}", type=error.get("type") or "upstream_error",
                    param=error.get("param"), code=error.get("code"))
