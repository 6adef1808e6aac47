"""The FastAPI application: OpenAI endpoints, health, metrics and the page, around any backend.

``create_app(backend)`` serves an :class:`~tokenzip.serve.protocol.Backend` (a model run in-process, or the proxy).
The routes are written once for every backend: body limit, JSON, admission (429 with ``Retry-After``),
Prometheus metrics, server-sent events, client disconnects, and OpenAI-shaped errors on every route
(unknown routes and methods included).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from tokenzip.errors import TokenzipError
from tokenzip.serve.admission import Admission, Ticket
from tokenzip.serve.errors import APIError, bad_request
from tokenzip.serve.limits import DEFAULT_MAX_BODY, BodyLimit
from tokenzip.serve.protocol import Backend
from tokenzip.textio import InvalidText, check_text

ROUTES = "POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics, GET /"


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON; 400 with an OpenAI error when it is not JSON, or when a string holds text no
    UTF-8 can hold (a lone UTF-16 surrogate, ``"\\ud800"``: valid JSON, but no text a tokenizer can read), its
    ``param`` naming the field."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    try:
        check_text(body, "the body")
    except InvalidText as exc:
        raise bad_request(str(exc), param=exc.field, code="invalid_text") from None
    return body


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await ``work``; if the client goes away first, cancel it (the backend stops) and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientGone
    finally:
        if not task.done():
            task.cancel()


def _error_event(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        body = exc.body()
    elif isinstance(exc, TokenzipError):
        body = bad_request(str(exc)).body()
    else:
        body = APIError(500, f"internal error: {exc}", type="server_error").body()
    return f"data: {json.dumps(body)}\n\n"


def _has_text(chunk: dict[str, Any]) -> bool:
    return any(c.get("text") or (c.get("delta") or {}).get("content") for c in chunk.get("choices") or [])


class Routes:
    """The server's routes around one backend."""

    def __init__(self, backend: Backend, admission: Admission) -> None:
        self.backend, self.admission, self.metrics = backend, admission, backend.metrics

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", **self.backend.describe(), "queue": self.admission.pending,
                "max_queue": self.admission.max_queue}

    def _model(self) -> dict[str, Any]:
        return {"id": self.backend.name, "object": "model", "created": 0, "owned_by": "tokenzip"}

    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._model()]}

    async def model(self, model_id: str) -> dict[str, Any]:
        if model_id != self.backend.name:
            raise APIError(404, f"The model {model_id!r} does not exist: this server serves {self.backend.name!r}",
                           param="model", code="model_not_found")
        return self._model()

    async def prometheus(self) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def page(self) -> HTMLResponse:
        from tokenzip.serve.page import html  # lazy: the page loads torch and transformers; only this route needs them

        return HTMLResponse(html(self.backend.name, str(self.backend.describe().get("compression", "none"))))

    async def completions(self, request: Request) -> Response:
        return await self._counted("completions", self._generate(request, "completions"))

    async def chat(self, request: Request) -> Response:
        return await self._counted("chat", self._generate(request, "chat"))

    async def compress(self, request: Request) -> Response:
        """The page's call, admitted and counted like any request."""
        return await self._counted("compress", self._explain(request))

    async def _counted(self, endpoint: str, answer: Awaitable[Response]) -> Response:
        """A route's answer, counted in ``tokenzip_requests_total`` under its status (an OpenAI error's, 499 when the
        client went away, 500 for anything else raised)."""
        status = "500"
        try:
            response = await answer
            status = str(response.status_code)
            return response
        except APIError as exc:
            status = str(exc.status)
            raise
        except ClientGone:
            status = "499"
            return Response(status_code=499)
        finally:
            self.metrics.requests.labels(endpoint, status).inc()

    async def _explain(self, request: Request) -> Response:
        start = time.perf_counter()
        body = await read_json(request)
        ticket = self.admission.enter()
        try:
            result = await until_disconnect(request, self.backend.explain(body))
        except BaseException:
            ticket.release(False)
            raise
        ticket.release(True)
        self.metrics.latency.labels("compress").observe(time.perf_counter() - start)
        return JSONResponse(result)

    # --- generation -----------------------------------------------------------------------------------
    async def _generate(self, request: Request, endpoint: str) -> Response:
        start = time.perf_counter()
        job = await self.backend.prepare(endpoint, await read_json(request))
        ticket = self.admission.enter()
        try:
            return await (self._stream(request, endpoint, job, ticket, start) if job.stream
                          else self._whole(request, endpoint, job, ticket, start))
        except BaseException:
            ticket.release(False)
            raise

    async def _whole(self, request: Request, endpoint: str, job: Any, ticket: Ticket, start: float) -> Response:
        body = await until_disconnect(request, self.backend.complete(job))
        ticket.release(True)
        self._count(endpoint, body.get("usage"))
        ttft = ((body.get("usage") or {}).get("compression") or {}).get("time_to_first_token_seconds")
        if ttft is not None:
            self.metrics.ttft.labels(endpoint).observe(ttft)
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return JSONResponse(body, headers=job.headers)

    async def _stream(self, request: Request, endpoint: str, job: Any, ticket: Ticket, start: float) -> Response:
        chunks = aiter(self.backend.stream(job))
        first = await until_disconnect(request, anext(chunks))  # errors before any output keep their HTTP status
        return StreamingResponse(self._events(endpoint, job, chunks, first, ticket, start),
                                 media_type="text/event-stream", headers=job.headers,
                                 background=BackgroundTask(ticket.release, False))

    async def _events(self, endpoint: str, job: Any, chunks: AsyncIterator[dict[str, Any]], first: dict[str, Any],
                      ticket: Ticket, start: float) -> AsyncIterator[str]:
        completed, seen_text = False, False
        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                if not seen_text and _has_text(chunk):
                    seen_text = True
                    self.metrics.ttft.labels(endpoint).observe(time.perf_counter() - start)
                if chunk.get("usage") is not None:
                    self._count(endpoint, chunk["usage"])
                    if not getattr(job, "include_usage", True):
                        chunk = await anext(chunks, None)
                        continue
                yield f"data: {json.dumps(chunk)}\n\n"
                chunk = await anext(chunks, None)
            yield "data: [DONE]\n\n"
            completed = True
        except Exception as exc:  # noqa: BLE001 - the error reaches the client inside the stream
            yield _error_event(exc)
            yield "data: [DONE]\n\n"
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            ticket.release(completed)
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    def _count(self, endpoint: str, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        self.metrics.prompt_tokens.inc(usage.get("prompt_tokens") or 0)
        self.metrics.completion_tokens.inc(usage.get("completion_tokens") or 0)
        compression = usage.get("compression")
        if isinstance(compression, dict):
            self.metrics.record_stages(compression.get("stages") or [])


def create_app(backend: Backend, max_queue: int = 16, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The server's application around ``backend``: at most ``max_queue`` requests held (beyond, 429), bodies of at
    most ``max_body`` bytes (beyond, 413, before the body is read)."""
    routes = Routes(backend, Admission(max_queue, backend.metrics))
    app = FastAPI(title="tokenzip serve", version="0.1.0")
    app.state.backend, app.state.metrics, app.state.admission = backend, backend.metrics, routes.admission
    app.add_middleware(BodyLimit, max_bytes=max_body)
    app.add_api_route("/health", routes.health, methods=["GET"])
    app.add_api_route("/v1/models", routes.models, methods=["GET"])
    app.add_api_route("/v1/models/{model_id:path}", routes.model, methods=["GET"])
    app.add_api_route("/metrics", routes.prometheus, methods=["GET"])
    app.add_api_route("/", routes.page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/v1/completions", routes.completions, methods=["POST"])
    app.add_api_route("/v1/chat/completions", routes.chat, methods=["POST"])
    app.add_api_route("/v1/tokenzip/compress", routes.compress, methods=["POST"])
    _openai_errors(app)
    return app


def _openai_errors(app: FastAPI) -> None:
    """Every error, on every route, as ``{"error": {"message", "type", "param", "code"}}``."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = APIError(404, f"Invalid URL ({request.method} {request.url.path}): this server answers {ROUTES}",
                             code="unknown_url")
        elif exc.status_code == 405:
            error = APIError(405, f"Method {request.method} is not allowed on {request.url.path} (this server "
                                  f"answers {ROUTES})", code="method_not_allowed")
        else:
            error = APIError(exc.status_code, str(exc.detail))
        return JSONResponse(error.body(), status_code=error.status, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(bad_request(f"invalid request: {exc.errors()[0].get('msg')}").body(), status_code=400)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        error = APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
        return JSONResponse(error.body(), status_code=500)
