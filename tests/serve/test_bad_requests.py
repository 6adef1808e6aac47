"""Every bad request class answers a clear 4xx with an OpenAI error object naming the client's field, on every
route, and leaves the server healthy. What the server does not implement is refused, never ignored."""

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
    (dict(OK, n=17), 400, "n", ["n", "less than or equal to 16"]),
    (dict(OK, temperature=2.5), 400, "temperature", ["temperature"]),
    (dict(OK, prompt=[1, 2, 3]), 400, "prompt", ["token-id prompts"]),
    (dict(OK, prompt=["a", "b"]), 400, "prompt", ["one prompt per request"]),
    (dict(OK, echo=True), 400, "echo", ["echo is not supported"]),
    (dict(OK, suffix="x"), 400, "suffix", ["suffix"]),
    (dict(OK, best_of=3), 400, "best_of", ["best_of"]),
    (dict(OK, logprobs=6), 400, "logprobs", ["less than or equal to 5"]),
    (dict(OK, logit_bias={"99999": 5}), 400, "logit_bias", ["outside the vocabulary"]),
    (dict(OK, logit_bias={"5": 101}), 400, "logit_bias", ["[-100, 100]"]),
    (dict(OK, frobnicate=1), 400, "frobnicate", ["Unrecognized request argument supplied: frobnicate"]),
    (dict(OK, store=True), 400, "store", ["store"]),
    (dict(OK, stream_options={"include_usage": True}), 400, "stream_options", ["only allowed when stream"]),
    ('{"model": "tiny-llama", "prompt": "a \\ud800 b"}', 400, "prompt", ["lone surrogate"]),
    ('{"model": "tiny-llama", "prompt": "a", "context": "b \\udfff"}', 400, "context", ["lone surrogate"]),
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


USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("messages, extra, param, words", [
    ([], {}, "messages", ["messages"]),
    ([{"role": "system", "content": "only a system message"}], {}, "messages", ["at least one user message"]),
    ([{"role": "wizard", "content": "hi"}], {}, "messages.0.role", ["messages.0.role"]),
    ([{"role": "user", "content": 5}], {}, "messages.0.content", ["messages.0.content"]),  # not ".str"
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], {}, "messages.0.content.0",
     ["image parts are not supported"]),
    ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], {}, "messages.0.content.0",
     ["audio parts"]),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "42", "tool_call_id": "x"}], {}, "messages.1",
     ["tool"]),
    ([{"role": "user", "content": "hi", "name": "bob"}], {}, "messages.0.name", ["messages.0.name"]),
    (USER, {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", ["tool calls are not supported"]),
    (USER, {"tool_choice": "required"}, "tool_choice", ["tool calls"]),
    (USER, {"response_format": {"type": "json_object"}}, "response_format", ["'json_object' is not supported"]),
    (USER, {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format",
     ["json_schema"]),
    (USER, {"top_logprobs": 3}, "top_logprobs", ["needs logprobs"]),
    (USER, {"logprobs": True, "top_logprobs": 21}, "top_logprobs", ["less than or equal to 20"]),
    (USER, {"modalities": ["text", "audio"]}, "modalities", ["modalities"]),
    (USER, {"audio": {"voice": "alloy"}}, "audio", ["audio output"]),
    (USER, {"reasoning_effort": "high"}, "reasoning_effort", ["reasoning"]),
])
def test_bad_chat_requests(tiny_server: str, messages: list[Any], extra: dict[str, Any], param: str,
                           words: list[str]) -> None:
    r = httpx.post(f"{tiny_server}/v1/chat/completions", json={"model": MODEL, "messages": messages, **extra},
                   timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param, error
    for word in words:
        assert word in error["message"], (word, error["message"])


def test_fields_that_only_identify_the_caller_are_accepted(tiny_server: str) -> None:
    body = {"model": MODEL, "messages": USER, "max_tokens": 2, "user": "u1", "metadata": {"k": "v"}, "store": False,
            "service_tier": "auto", "response_format": {"type": "text"}, "modalities": ["text"]}
    assert httpx.post(f"{tiny_server}/v1/chat/completions", json=body, timeout=60).status_code == 200


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/v1/nope", 404, "unknown_url"),
    ("POST", "/v1/embeddings", 404, "unknown_url"),
    ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
    ("GET", "/v1/models/gpt-9", 404, "model_not_found"),
])
def test_every_route_answers_openai_errors(tiny_server: str, method: str, path: str, status: int, code: str) -> None:
    r = httpx.request(method, f"{tiny_server}{path}", timeout=60)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code


def test_openai_client_raises_its_error_classes(client: Any) -> None:
    import openai

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"compression": "kv:snapkv@1.5"})
    assert err.value.body["param"] == "compression"
    assert client.completions.create(model=MODEL, prompt="hi", max_tokens=2).usage.completion_tokens >= 0
