"""The request body limit, checked before a byte of the body is parsed (or, by ``Content-Length``, read)."""

from __future__ import annotations

import json
from typing import Any

from tokenzip.serve.errors import APIError

DEFAULT_MAX_BODY = 4 << 20
_DRAIN = 256 << 20  # bytes of a refused body read and dropped, so that the client reads the 413


def too_large(limit: int, size: int | None = None) -> APIError:
    got = f"{size} bytes" if size is not None else "more"
    return APIError(413, f"the request body is too large ({got}; this server accepts at most {limit} bytes: "
                         "send less text, or start the server with a larger --max-body)",
                    code="request_too_large")


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` answers 413 in OpenAI's error shape. A ``Content-Length`` over
    the limit is refused before the body is read; a chunked body is counted as it arrives and refused as soon as
    it passes the limit."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _answer(send, APIError(400, "Content-Length is not a number", code="invalid_request"))
                return
            if size > self.max_bytes:
                await _answer(send, too_large(self.max_bytes, size))
                await _drain(receive)
                return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if message.get("more_body"):
                        await _drain(receive)
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, counted, send)


async def _answer(send: Any, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Any) -> None:
    """Read and drop the rest of a refused body (up to a bound): a client that sends its whole body before reading
    the response then gets the 413 instead of a reset connection."""
    dropped = 0
    while dropped < _DRAIN:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body"):
            return
