"""The body limit: a 20 MB body is refused with 413 (OpenAI's error shape) before it is parsed or tokenized."""

from __future__ import annotations

import re
import time

import httpx

MODEL = "tiny-llama"


def _prompt_tokens(url: str) -> float:
    return float(re.search(r"^tokenzip_prompt_tokens_total (\S+)$", httpx.get(f"{url}/metrics").text, re.M).group(1))


def test_a_20_mb_body_is_refused_in_under_a_second(tiny_server: str) -> None:
    import openai

    before = _prompt_tokens(tiny_server)
    body = b'{"model": "tiny-llama", "max_tokens": 1, "prompt": "' + b"word " * (4 << 20) + b'"}'
    assert len(body) > 20 << 20
    start = time.perf_counter()
    r = httpx.post(f"{tiny_server}/v1/completions", content=body, headers={"content-type": "application/json"},
                   timeout=60)
    assert time.perf_counter() - start < 1.0  # sending 20 MB to 127.0.0.1 included
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "at most 4194304 bytes" in r.json()["error"]["message"]
    assert _prompt_tokens(tiny_server) == before  # nothing was tokenized
    # The official client gets its error class; the server goes on answering.
    client = openai.OpenAI(base_url=f"{tiny_server}/v1", api_key="unused", max_retries=0)
    start = time.perf_counter()
    try:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * (20 << 20)}])
        raise AssertionError("no error")
    except openai.APIStatusError as exc:
        assert exc.status_code == 413
    assert time.perf_counter() - start < 2.0  # the client also encodes 20 MB of JSON
    assert httpx.post(f"{tiny_server}/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 1},
                      timeout=60).status_code == 200


def test_a_chunked_body_is_counted_as_it_arrives(tiny_server: str) -> None:
    def chunks():
        yield b'{"model": "tiny-llama", "prompt": "'
        for _ in range(6):
            yield b"x" * (1 << 20)
        yield b'"}'

    r = httpx.post(f"{tiny_server}/v1/completions", content=chunks(), headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_a_prompt_longer_than_any_context_is_refused_before_it_is_tokenized(tiny_server: str) -> None:
    before = _prompt_tokens(tiny_server)
    start = time.perf_counter()
    r = httpx.post(f"{tiny_server}/v1/completions", json={"model": MODEL, "prompt": "words " * 600_000}, timeout=60)
    assert time.perf_counter() - start < 1.0
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 4096" in r.json()["error"]["message"]
    assert _prompt_tokens(tiny_server) == before
