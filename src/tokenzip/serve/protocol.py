"""The engine boundary: what the server's routes call, whatever runs the model.

An **engine** turns an OpenAI request body into a *job* (checking it and answering 4xx before any work),
then answers the job as a stream of OpenAI chunks or as one response. The routes around it
(:mod:`tokenzip.serve.app`) do everything else, once for every engine: bound the body size, parse JSON,
admit or refuse the job (429 with ``Retry-After``, :mod:`tokenzip.serve.admission`), count the Prometheus
metrics, frame server-sent events, notice a client that went away, and write every error in OpenAI's
shape. The routes never ask which engine runs.

Contract:

* ``prepare`` raises :class:`tokenzip.serve.errors.APIError` for a request it cannot answer; nothing has
  run yet, and nothing needs undoing.
* ``stream(job)`` yields OpenAI chunk bodies (``chat.completion.chunk`` or ``text_completion``), then a usage
  chunk (``choices: []``) whenever the engine has usage; the routes count it and pass it on only when the
  client asked for it (``job.include_usage``, from ``stream_options``). Errors before the first chunk
  are raised as :class:`APIError` (the route answers with its status); later ones reach the client inside the
  stream. Closing the iterator early (the client went away) stops the job's work.
* ``complete(job)`` returns the whole response body, ``usage`` included. Cancelling the awaiting task (the
  client went away) stops the job's work. :func:`tokenzip.serve.responses.assemble` builds it from ``stream``.
* ``explain(body)`` answers the page's ``POST /v1/tokenzip/compress``.
* ``usage.compression`` (a dict, any engine's own) is what the routes count in ``tokenzip_tokens_removed``.

Engines: :class:`tokenzip.serve.engine.LocalEngine` (a transformers model: compression per request, the
compressed context cache, batching) and :class:`tokenzip.serve.proxy.ProxyEngine` (the prompt stage in front
of an upstream OpenAI-compatible server). Another engine (e.g. llama.cpp in-process) implements this protocol
and is given to :func:`tokenzip.serve.app.create_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from tokenzip.serve.metrics import Metrics

ENDPOINTS = ("chat", "completions")


class Job(Protocol):
    """A checked request, ready to run."""

    stream: bool  # the client asked for server-sent events
    include_usage: bool  # ... with a usage chunk at the end
    headers: dict[str, str]  # extra response headers (e.g. the proxy's x-tokenzip-compression)


class Engine(Protocol):
    """What the routes call (see the module docstring for the contract)."""

    name: str  # the model id clients send and GET /v1/models lists
    metrics: Metrics  # the server's metrics; an engine adds its own counts (cache hits, ...)

    def describe(self) -> dict[str, Any]:
        """What GET /health reports beside ``status``: at least ``mode`` and ``compression`` (the default spec)."""
        ...

    async def prepare(self, endpoint: str, body: Any) -> Job:
        """Check a request body for ``endpoint`` (``"chat"`` or ``"completions"``)."""
        ...

    def stream(self, job: Any) -> AsyncIterator[dict[str, Any]]:
        """The job's answer as OpenAI stream chunks."""
        ...

    async def complete(self, job: Any) -> dict[str, Any]:
        """The job's answer as one OpenAI response body."""
        ...

    async def explain(self, body: Any) -> dict[str, Any]:
        """The page's call: what each stage of a pipeline keeps of a text, and the answers with and without it."""
        ...

    def shutdown(self) -> None:
        """Stop the engine's threads (the server is stopping)."""
        ...
