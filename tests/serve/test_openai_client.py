"""The official openai client against a live server on the tiny llama: endpoints, streaming, usage, cache."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

MODEL = "tiny-llama"
DOC = " ".join(f"Line {i}: the key {i * 7919 % 10007} opens the blue house by the river." for i in range(40))


def _usage(resp: Any) -> dict[str, Any]:
    return resp.usage.model_dump()


def test_models_and_health(client: Any, tiny_server: str) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]
    health = httpx.get(f"{tiny_server}/health").json()
    assert health["status"] == "ok" and health["compression"] == "kv:snapkv@0.5"


def test_completion_usage_and_stream_agree(client: Any) -> None:
    prompt = DOC + "\n\nWhich key opens the house?"
    resp = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6)
    usage = _usage(resp)
    assert resp.object == "text_completion" and resp.choices[0].finish_reason in ("stop", "length")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 6
    comp = usage["compression"]
    assert comp["spec"] == "kv:snapkv@0.5"
    assert comp["context_tokens"] + comp["question_tokens"] == usage["prompt_tokens"]
    kv = comp["stages"][-1]
    assert kv["stage"] == "kv" and kv["entries_after"] < kv["entries_before"]
    assert comp["kv_bytes_held"] == kv["bytes_after"] < kv["bytes_before"] == comp["kv_bytes_dense"]
    pieces = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, stream=True))
    assert "".join(p.choices[0].text for p in pieces) == resp.choices[0].text
    assert pieces[-1].choices[0].finish_reason == resp.choices[0].finish_reason


def test_chat_stream_with_usage_matches_plain(client: Any) -> None:
    messages = [{"role": "system", "content": DOC}, {"role": "user", "content": "Which key opens the house?"}]
    resp = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6)
    assert resp.object == "chat.completion" and resp.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == resp.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == resp.usage.prompt_tokens


def test_raw_stream_ends_with_done(tiny_server: str) -> None:
    body = {"model": MODEL, "prompt": "Hello there", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{tiny_server}/v1/completions", json=body, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_extra_body_compression_overrides_default(client: Any) -> None:
    resp = client.completions.create(model=MODEL, prompt=DOC + "\n\nWhich key?", max_tokens=3,
                                     extra_body={"compression": "kv : streaming_llm @ 0.75"})
    comp = _usage(resp)["compression"]
    assert comp["spec"] == "kv:streaming_llm@0.75"
    kv = comp["stages"][-1]
    assert kv["method"] == "kv:streaming_llm@0.75"
    assert 0.70 <= 1 - kv["entries_after"] / kv["entries_before"] <= 0.76
    none = client.completions.create(model=MODEL, prompt=DOC + "\n\nWhich key?", max_tokens=3,
                                     extra_body={"compression": "none"})
    kv = _usage(none)["compression"]["stages"][-1]
    assert kv["method"] == "none" and kv["entries_after"] == kv["entries_before"]


def test_second_question_hits_the_cache_and_answers_as_a_fresh_prefill(client: Any, tiny_server: str,
                                                                       tiny_app: Any) -> None:
    doc = DOC.replace("blue", "green")  # a document no other test used
    first = client.completions.create(model=MODEL, prompt=doc + "\n\nWhich key opens the house?", max_tokens=5)
    second = client.completions.create(model=MODEL, prompt=doc + "\n\nWhat is by the river?", max_tokens=5)
    u1, u2 = _usage(first), _usage(second)
    assert u1["compression"]["cache"] == "miss" and u1["prompt_tokens_details"]["cached_tokens"] == 0
    assert u2["compression"]["cache"] == "hit"
    assert u2["prompt_tokens_details"]["cached_tokens"] == u2["compression"]["context_tokens"] > 0
    assert u2["compression"]["stages"][-1]["cached"] is True
    chat = client.chat.completions.create(model=MODEL, max_tokens=3, messages=[
        {"role": "system", "content": doc}, {"role": "user", "content": "Which key?"}])
    chat2 = client.chat.completions.create(model=MODEL, max_tokens=3, messages=[
        {"role": "system", "content": doc}, {"role": "user", "content": "Which house?"}])
    assert chat.usage.model_dump()["compression"]["cache"] == "miss"
    assert chat2.usage.prompt_tokens_details.cached_tokens > 0
    metrics = httpx.get(f"{tiny_server}/metrics").text
    assert "tokenzip_cache_hits_total" in metrics and 'tokenzip_tokens_removed_total{stage="kv"}' in metrics
    # The same question with the cache emptied (a fresh prefill) gives the same answer.
    tiny_app.state.engine.cache.clear()
    again = client.completions.create(model=MODEL, prompt=doc + "\n\nWhat is by the river?", max_tokens=5)
    assert _usage(again)["compression"]["cache"] == "miss"
    assert again.choices[0].text == second.choices[0].text


def test_page_endpoint_reports_kept_spans(tiny_server: str) -> None:
    text = "First sentence about cats. Second sentence about dogs. Third sentence about the key 42."
    r = httpx.post(f"{tiny_server}/v1/tokenzip/compress", timeout=120,
                   json={"text": text, "question": "Which key?", "compression": "prompt:head@0.5 | kv:snapkv@0.5"})
    assert r.status_code == 200, r.text
    data = r.json()
    prompt, kv = data["stages"]
    assert prompt["tokens_after"] < prompt["tokens_before"] and kv["entries_after"] < kv["entries_before"]
    assert data["kept_spans"] and all(0 <= a < b <= len(text) for a, b in data["kept_spans"])
    page = httpx.get(f"{tiny_server}/").text
    assert "<script>" in page and "http" not in page.split("<script>")[1].split("fetch(")[0]


def test_layers_stage_is_served_with_kv(client: Any) -> None:
    doc = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4
    resp = client.completions.create(model=MODEL, prompt=doc + "\n\nWhat is the number?", max_tokens=3,
                                     extra_body={"compression": "layers:fastv@0.5 | kv:snapkv@0.5"})
    layers, kv = _usage(resp)["compression"]["stages"][-2:]
    assert layers["stage"] == "layers" and layers["tokens_after"] < layers["tokens_before"]
    assert kv["stage"] == "kv" and kv["entries_after"] < kv["entries_before"]


def test_a_layers_method_the_model_cannot_take_is_refused_up_front(client: Any) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="a\n\nb", max_tokens=2,
                                  extra_body={"compression": "layers:tome@0.3"})
    assert "tome does not support" in err.value.body["message"]
