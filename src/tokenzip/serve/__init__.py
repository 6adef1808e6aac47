"""`tokenzip serve`: an OpenAI-compatible server with sampling, chat templates, compression per request, a
compressed context cache, batching, and a compressing proxy (needs the ``serve`` extra:
``pip install 'tokenzip[serve]'``).

    from tokenzip.serve import build_app
    app = build_app("gemma-3-270m", compression="kv:kvzip@0.5")   # an ASGI app for uvicorn

The routes (:mod:`tokenzip.serve.app`) call one backend protocol (:mod:`tokenzip.serve.protocol`): the torch
backend (:mod:`tokenzip.serve.torch_backend`), the same in llama.cpp (:mod:`tokenzip.serve.llamacpp`,
``--engine llamacpp``) or the proxy (:mod:`tokenzip.serve.proxy`).
"""

from __future__ import annotations

from typing import Any

import tokenzip as tz
from tokenzip.engines import check_engine
from tokenzip.errors import TokenzipError, require
from tokenzip.serve.limits import DEFAULT_MAX_BODY


def load_served_model(name: str) -> tuple[Any, Any]:
    """``tz.load_model(name)``, or a tiny random test model for ``tiny-<family>`` (e.g. ``tiny-llama``)."""
    if name.startswith("tiny-"):
        from tokenzip.testing import tiny_model  # lazy: tokenzip.testing loads torch and transformers

        return tiny_model(name[len("tiny-"):])
    return tz.load_model(name)


def build_app(model: str, compression: str | None = None, cache_bytes: int = 2 << 30, max_queue: int = 16,
              upstream: str | None = None, scorer: str = "gemma-3-270m", upstream_model: str | None = None,
              model_objects: tuple[Any, Any] | None = None, max_batch: int = 8, min_context_tokens: int = 512,
              max_body: int = DEFAULT_MAX_BODY, engine: str = "torch", n_ctx: int | None = None,
              threads: int | None = None) -> Any:
    """The FastAPI app: a local ``model`` (or ``model_objects``), or a proxy in front of ``upstream``.

    ``max_batch``: sequences decoded together (1: one request at a time); ``min_context_tokens``: the shortest
    context the default pipeline and the context cache apply to; ``max_queue``: requests held before 429;
    ``max_body``: the largest request body in bytes (413 beyond, before it is read). ``engine="llamacpp"``: the
    model's GGUF in llama.cpp (:mod:`tokenzip.serve.llamacpp`; ``n_ctx`` and ``threads`` are llama.cpp's)."""
    for module in ("fastapi", "uvicorn", "prometheus_client", "httpx"):
        require(module, "serve")
    from tokenzip.serve.app import create_app  # lazy: the serve extra (fastapi), checked by require() above

    check_engine(engine)
    if engine == "llamacpp":
        if upstream:
            raise TokenzipError("--engine llamacpp serves a model in-process; --upstream proxies another server")
        # lazy: only the chosen backend loads (torch, the serve extra)
        from tokenzip.serve.llamacpp import LlamaCppBackend

        backend: Any = LlamaCppBackend.load(model, n_ctx=n_ctx, threads=threads, default_spec=compression,
                                             cache_bytes=cache_bytes, min_context_tokens=min_context_tokens)
        return create_app(backend, max_queue=max_queue, max_body=max_body)
    if n_ctx is not None or threads is not None:
        raise TokenzipError("n_ctx and threads size llama.cpp's context: add --engine llamacpp")
    if upstream:
        from tokenzip.serve.proxy import ProxyBackend  # lazy: only the chosen backend loads (torch, the serve extra)

        objects = model_objects or load_served_model(scorer)
        backend = ProxyBackend(upstream, *objects, name=upstream_model or model, compression=compression)
    else:
        # lazy: only the chosen backend loads (torch, the serve extra)
        from tokenzip.serve.torch_backend import TorchBackend

        objects = model_objects or load_served_model(model)
        backend = TorchBackend(*objects, name=model, default_spec=compression, cache_bytes=cache_bytes,
                               max_batch=max_batch, min_context_tokens=min_context_tokens)
    return create_app(backend, max_queue=max_queue, max_body=max_body)
