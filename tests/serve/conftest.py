"""Fixtures for the server tests: a live uvicorn server on 127.0.0.1 (a free port), stopped after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

for _module in ("fastapi", "uvicorn", "httpx", "openai", "prometheus_client"):
    pytest.importorskip(_module, reason=f"{_module} is missing: pip install 'tokenzip[serve,dev]'")

from tokenzip.serve.local import live_server  # noqa: E402


@pytest.fixture(scope="session")
def tiny_objects() -> tuple[Any, Any]:
    from tokenzip.testing import tiny_model

    return tiny_model("llama")


MIN_CONTEXT = 64


@pytest.fixture(scope="module")
def tiny_app(tiny_objects: tuple[Any, Any]) -> Any:
    """The app on the tiny llama: default compression snapkv at 0.5 on contexts of at least 64 tokens, a 64 MiB
    context cache."""
    from tokenzip.serve import build_app

    return build_app("tiny-llama", compression="kv:snapkv@0.5", cache_bytes=64 << 20, model_objects=tiny_objects,
                     min_context_tokens=MIN_CONTEXT)


@pytest.fixture(scope="module")
def tiny_server(tiny_app: Any) -> Iterator[str]:
    """``tiny_app`` live on 127.0.0.1."""
    with live_server(tiny_app) as url:
        yield url


@pytest.fixture()
def client(tiny_server: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{tiny_server}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def needle_doc() -> str:
    """About 600 Gemma tokens of filler with one fact: the archive room's code is 4817."""
    return (
        "The museum opened in 1901 and has three floors of paintings. Visitors often start on the ground floor. "
        "The cafe serves soup and bread at noon. The garden behind the museum has old oak trees and a fountain. "
    ) * 6 + "The secret code for the archive room is 4817. " + (
        "The gift shop sells postcards and books. Guided tours leave every hour from the main hall. "
        "The building was restored in 1985 after a small fire. School groups visit on weekdays. "
    ) * 6
