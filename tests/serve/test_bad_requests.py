"""Every bad request class answers a clear 4xx with an OpenAI error object and leaves the server healthy."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

MODEL = "tiny-llama"
OK = {"model": MODEL, "prompt": "Hello world", "max_tokens": 2}


@pytest.mark.parametrize("body, status, param, words", [
    ('{"model": "tiny-llama", "prompt": ', 400, None, ["not valid JSON"]),
    ("[1, 2]", 400, None, ["JSON object"]),
    ({"model": "gpt-9", "prompt": "hi"}, 404, "model", ["'gpt-9' does not exist", MODEL]),
    (dict(OK, compression="kv:snapkvv@0.5"), 400, "compression", ["unknown kv method 'snapkvv'", "snapkv"]),
    (dict(OK, compression="kv:snapkv@1.5"), 400, "compression", ["ratio", "1.5"]),
    (dict(OK, compression="kv:snapkv@0.5 | kv:knorm@0.5"), 400, "compression", ["two kv methods"]),
    (dict(OK, compression="gpu:fast"), 400, "compression", ["unknown pipeline stage 'gpu'"]),
    (dict(OK, prompt="key " * 5000), 400, "prompt", ["maximum context length is 4096"]),
    (dict(OK, max_tokens=0), 400, "max_tokens", ["max_tokens", "greater than or equal to 1"]),
    (dict(OK, max_tokens=5000), 400, "prompt", ["maximum context length"]),
    ({"model": MODEL}, 400, "prompt", ["prompt", "required"]),
    (dict(OK, n=2), 400, "n", ["n"]),
])
def test_bad_completion_requests(tiny_server: str, body: Any, status: int, param: str | None,
                                 words: list[str]) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(f"{tiny_server}/v1/completions", content=content, headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert httpx.get(f"{tiny_server}/health").json()["status"] == "ok"
    assert httpx.post(f"{tiny_server}/v1/completions", json=OK, timeout=60).status_code == 200


@pytest.mark.parametrize("messages, words", [
    ([], ["messages"]),
    ([{"role": "system", "content": "only a system message"}], ["at least one user message"]),
    ([{"role": "wizard", "content": "hi"}], ["messages.0.role"]),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], ["messages.0.content"]),
])
def test_bad_chat_requests(tiny_server: str, messages: list[Any], words: list[str]) -> None:
    r = httpx.post(f"{tiny_server}/v1/chat/completions", json={"model": MODEL, "messages": messages}, timeout=60)
    assert r.status_code == 400, r.text
    for word in words:
        assert word in r.json()["error"]["message"]


def test_openai_client_raises_its_error_classes(client: Any) -> None:
    import openai

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"compression": "kv:snapkv@1.5"})
    assert err.value.body["param"] == "compression"
    assert client.completions.create(model=MODEL, prompt="hi", max_tokens=2).usage.completion_tokens >= 0
