"""`tokenzip serve`: an OpenAI-compatible server with compression per request, a compressed context
cache, and a compressing proxy (needs the ``serve`` extra: ``pip install 'tokenzip[serve]'``).

    from tokenzip.serve import build_app
    app = build_app("gemma-3-270m", compression="kv:kvzip@0.5")   # an ASGI app for uvicorn
"""

from __future__ import annotations

from typing import Any

from tokenzip.errors import require


def load_served_model(name: str) -> tuple[Any, Any]:
    """``tz.load_model(name)``, or a tiny random test model for ``tiny-<family>`` (e.g. ``tiny-llama``)."""
    if name.startswith("tiny-"):
        from tokenzip.testing import tiny_model

        return tiny_model(name[len("tiny-"):])
    import tokenzip as tz

    return tz.load_model(name)


def build_app(model: str, compression: str | None = None, cache_bytes: int = 2 << 30, max_queue: int = 16,
              upstream: str | None = None, scorer: str = "gemma-3-270m", upstream_model: str | None = None,
              model_objects: tuple[Any, Any] | None = None) -> Any:
    """The FastAPI app: a local ``model`` (or ``model_objects``), or a proxy in front of ``upstream``."""
    for module in ("fastapi", "uvicorn", "prometheus_client", "httpx"):
        require(module, "serve")
    from tokenzip.serve.app import create_app

    if upstream:
        from tokenzip.serve.proxy import Proxy

        objects = model_objects or load_served_model(scorer)
        return create_app(proxy=Proxy(upstream, *objects, name=upstream_model or model, compression=compression,
                                      max_queue=max_queue))
    from tokenzip.serve.engine import Engine

    objects = model_objects or load_served_model(model)
    return create_app(engine=Engine(*objects, name=model, default_spec=compression, cache_bytes=cache_bytes,
                                    max_queue=max_queue))
