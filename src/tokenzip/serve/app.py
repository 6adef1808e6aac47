"""The FastAPI application: OpenAI endpoints, health, metrics, and the page.

``create_app(engine=...)`` serves a local model; ``create_app(proxy=...)`` forwards to an upstream
OpenAI-compatible server after the prompt stage (see :mod:`tokenzip.serve.proxy`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from tokenzip.errors import TokenzipError
from tokenzip.serve.engine import Engine, Job, Result, parse_spec
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.metrics import Metrics
from tokenzip.serve.schemas import ChatRequest, CompletionRequest, CompressRequest, error_param
from tokenzip.serve.split import chat_prompt, completion_prompt
from tokenzip.textio import check_text

_DONE = object()


async def read_body(request: Request, schema: type[BaseModel]) -> Any:
    """The request body validated against ``schema``; 400 with an OpenAI error when it is not."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    try:
        check_text(data, "the body")
    except TokenzipError as exc:
        raise bad_request(str(exc), code="invalid_text") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = error_param(first["loc"])
        raise bad_request(f"{param or 'body'}: {first['msg']}", param=param) from None


def usage_block(job: Job, result: Result) -> dict[str, Any]:
    """OpenAI's usage fields plus tokenzip's ``compression`` block."""
    u = dict(result.usage)
    cached = u.pop("cached_tokens", 0)
    return {"prompt_tokens": job.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": job.prompt_tokens + result.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached}, "compression": u}


def _finish(reason: str) -> str:
    return "stop" if reason == "cancelled" else reason


def create_app(engine: Engine | None = None, proxy: Any = None, metrics: Metrics | None = None) -> FastAPI:
    """The server's application, backed by a local ``engine`` or an upstream ``proxy``."""
    if (engine is None) == (proxy is None):
        raise TokenzipError("create_app needs exactly one of engine= or proxy=")
    backend = engine or proxy
    metrics = backend.metrics if metrics is None else metrics
    app = FastAPI(title="tokenzip serve", version="0.1.0")
    app.state.engine, app.state.proxy, app.state.metrics = engine, proxy, metrics

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **backend.describe()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "created": 0,
                                            "owned_by": "tokenzip"}]}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _endpoint(request, "completions")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _endpoint(request, "chat")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        from tokenzip.serve.page import html

        return HTMLResponse(html(backend.name, str(backend.default_spec)))

    @app.post("/v1/tokenzip/compress")
    async def compress(request: Request) -> dict[str, Any]:
        from tokenzip.serve.page import explain

        req = await read_body(request, CompressRequest)
        spec = parse_spec(req.compression, backend.default_spec)
        backend.check_servable(spec)
        try:
            return await backend.call(explain, backend.model, backend.tok, req.text, req.question, spec)
        except TokenzipError as exc:
            raise bad_request(str(exc), param="text") from None

    async def _endpoint(request: Request, kind: str) -> Response:
        start = time.perf_counter()
        status, streaming = 500, False
        try:
            response = await (_local(request, kind) if engine else proxy.handle(request, kind))
            status, streaming = response.status_code, isinstance(response, StreamingResponse)
            return response
        except APIError as exc:
            status = exc.status
            raise
        finally:
            metrics.requests.labels(kind, str(status)).inc()
            if status == 200 and not streaming:  # a stream records its latency when it ends
                metrics.latency.labels(kind).observe(time.perf_counter() - start)

    async def _local(request: Request, kind: str) -> Response:
        assert engine is not None
        req = await read_body(request, ChatRequest if kind == "chat" else CompletionRequest)
        if req.model != engine.name:
            raise APIError(404, f"The model {req.model!r} does not exist: this server serves {engine.name!r} "
                           "(GET /v1/models)", param="model", code="model_not_found")
        spec = parse_spec(req.compression, engine.default_spec)
        if kind == "chat":
            prompt = chat_prompt(req.plain_messages(), engine.tok)
            limit = req.max_completion_tokens or req.max_tokens
        else:
            prompt = completion_prompt(req.prompt, req.context)
            limit = req.max_tokens
        job = await run_in_threadpool(engine.plan, prompt, spec, limit, req.stops())
        engine.admit()
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if req.stream:
            return StreamingResponse(_stream(request, kind, rid, job, req.include_usage),
                                     media_type="text/event-stream")
        pieces: list[str] = []
        future = _submit(job, pieces.append)
        watcher = asyncio.create_task(_watch(request, job))
        try:
            result = await future
        except TokenzipError as exc:
            raise bad_request(str(exc)) from None
        finally:
            watcher.cancel()
        metrics.ttft.labels(kind).observe(result.usage["time_to_first_token_seconds"])
        head = {"id": rid, "created": int(time.time()), "model": engine.name}
        usage = usage_block(job, result)
        if kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": result.text}, "logprobs": None,
                      "finish_reason": _finish(result.finish_reason)}
            return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})
        choice = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": _finish(result.finish_reason)}
        return JSONResponse({**head, "object": "text_completion", "choices": [choice], "usage": usage})

    def _submit(job: Job, emit: Any) -> asyncio.Future:
        assert engine is not None
        future = engine.submit(job, emit)
        future.add_done_callback(lambda f: engine.release(time.perf_counter() - job.started))
        return future

    async def _watch(request: Request, job: Job) -> None:
        while not job.cancel.is_set():
            if await request.is_disconnected():
                job.cancel.set()
                return
            await asyncio.sleep(0.2)

    async def _stream(request: Request, kind: str, rid: str, job: Job, include_usage: bool) -> AsyncIterator[str]:
        assert engine is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        future = _submit(job, lambda piece: loop.call_soon_threadsafe(queue.put_nowait, piece))
        future.add_done_callback(lambda f: queue.put_nowait(_DONE))
        head = {"id": rid, "created": int(time.time()), "model": engine.name,
                "object": "chat.completion.chunk" if kind == "chat" else "text_completion"}

        def chunk(piece: str | None, finish: str | None = None, first: bool = False) -> str:
            if kind == "chat":
                delta = {"role": "assistant", "content": ""} if first else {} if piece is None else {"content": piece}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

        try:
            if kind == "chat":
                yield chunk(None, first=True)
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=0.25)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        job.cancel.set()
                        return
                    continue
                if item is _DONE:
                    break
                yield chunk(item)
            try:
                result = future.result()
            except Exception as exc:  # the error reaches the client inside the stream
                message = str(exc) if isinstance(exc, TokenzipError) else f"internal error: {exc}"
                err = {"error": {"message": message, "type": "invalid_request_error" if isinstance(
                    exc, TokenzipError) else "server_error", "param": None, "code": None}}
                yield f"data: {json.dumps(err)}\n\n"
                yield "data: [DONE]\n\n"
                return
            metrics.ttft.labels(kind).observe(result.usage["time_to_first_token_seconds"])
            yield chunk(None, _finish(result.finish_reason))
            if include_usage:
                yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage_block(job, result)})}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if not future.done():
                job.cancel.set()
            metrics.latency.labels(kind).observe(time.perf_counter() - job.started)

    return app
