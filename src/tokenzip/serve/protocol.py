"""The serving boundary: what the server's routes call, whatever answers the request.

Two layers, two protocols:

* a **runtime engine** (:class:`tokenzip.engines.base.Engine`: :class:`~tokenzip.engines.torch.TorchEngine`,
  :class:`~tokenzip.engines.llamacpp.engine.LlamaCppEngine`) runs a model on one context: prefill, compress,
  generate, save/restore;
* a **backend** (:class:`Backend`, here) answers OpenAI requests in front of a runtime: it checks and plans a
  request, decides where compression applies, keeps the context cache, batches, samples and streams chunks.

Why two: a proxy is a backend with no runtime at all (its model is upstream: nothing to prefill, no cache to
keep), and batching several requests' sequences in one forward pass is a server concern that a one-context
runtime does not have. :class:`tokenzip.serve.torch_backend.TorchBackend` runs on a
:class:`~tokenzip.engines.torch.TorchEngine`, :class:`tokenzip.serve.llamacpp.LlamaCppBackend` on a
:class:`~tokenzip.engines.llamacpp.engine.LlamaCppEngine`, :class:`tokenzip.serve.proxy.ProxyBackend` on an
upstream server.

A backend turns an OpenAI request body into a *job* (checking it and answering 4xx before any work), then answers
the job as a stream of OpenAI chunks or as one response. The routes around it (:mod:`tokenzip.serve.app`) do
everything else, once for every backend: bound the body size, parse JSON, admit or refuse the job (429 with
``Retry-After``, :mod:`tokenzip.serve.admission`), count the Prometheus metrics, frame server-sent events, notice a
client that went away, and write every error in OpenAI's shape. The routes never ask which backend runs.

Contract:

* ``prepare`` raises :class:`tokenzip.serve.errors.APIError` for a request it cannot answer; nothing has
  run yet, and nothing needs undoing.
* ``stream(job)`` yields OpenAI chunk bodies (``chat.completion.chunk`` or ``text_completion``), then a usage
  chunk (``choices: []``) whenever the backend has usage; the routes count it and pass it on only when the
  client asked for it (``job.include_usage``, from ``stream_options``). Errors before the first chunk
  are raised as :class:`APIError` (the route answers with its status); later ones reach the client inside the
  stream. Closing the iterator early (the client went away) stops the job's work.
* ``complete(job)`` returns the whole response body, ``usage`` included. Cancelling the awaiting task (the
  client went away) stops the job's work. :func:`tokenzip.serve.responses.assemble` builds it from ``stream``.
* ``explain(body)`` answers the page's ``POST /v1/tokenzip/compress``.
* ``usage.compression`` (a dict, any backend's own) is what the routes count in ``tokenzip_tokens_removed``; its
  ``stages`` are :meth:`tokenzip.pipeline.StageRecord.to_dict` rows.

Another backend implements this protocol and is given to :func:`tokenzip.serve.app.create_app`.
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


class Backend(Protocol):
    """What the routes call (see the module docstring for the contract)."""

    name: str  # the model id clients send and GET /v1/models lists
    metrics: Metrics  # the server's metrics; a backend adds its own counts (cache hits, ...)

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
        """Stop the backend's threads (the server is stopping)."""
        ...
