"""Concurrent clients never mix answers; a full queue answers 429; a client that leaves stops its generation."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tokenzip.serve.local import live_server

MODEL = "tiny-llama"
DOCS = [" ".join(f"Item {i}: {word} number {i * k % 997}." for i in range(30)) for k, word in
        ((13, "red"), (31, "green"), (57, "blue"))]


def _requests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d, doc in enumerate(DOCS):
        for q, question in enumerate(("Which number is red?", "Which item is last?")):
            if (d + q) % 2:
                body = {"messages": [{"role": "system", "content": doc}, {"role": "user", "content": question}]}
                out.append(("chat/completions", body))
            else:
                out.append(("completions", {"prompt": f"{doc}\n\n{question}"}))
        out.append(("completions", {"prompt": f"{doc}\n\nSay it.", "compression": "kv:streaming_llm@0.5"}))
    return out


def _ask(url: str, path: str, body: dict[str, Any], stream: bool) -> str:
    body = dict(body, model=MODEL, max_tokens=6, stream=stream)
    if not stream:
        r = httpx.post(f"{url}/v1/{path}", json=body, timeout=300)
        r.raise_for_status()
        choice = r.json()["choices"][0]
        return choice["message"]["content"] if "message" in choice else choice["text"]
    import json

    text = ""
    with httpx.stream("POST", f"{url}/v1/{path}", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choice = json.loads(line[6:])["choices"]
                if choice:
                    text += choice[0].get("text") or choice[0].get("delta", {}).get("content") or ""
    return text


def test_concurrent_clients_each_get_their_own_answer(tiny_server: str) -> None:
    jobs = _requests()
    alone = [_ask(tiny_server, path, body, False) for path, body in jobs]
    assert len(set(alone)) > 1  # different requests answer differently, so mixing would show
    work = [(i, stream) for stream in (False, True) for i in range(len(jobs))]  # 18 requests, 4 clients

    def one(item: tuple[int, bool]) -> tuple[int, str]:
        i, stream = item
        return i, _ask(tiny_server, *jobs[i], stream)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, work))
    assert time.monotonic() - started < 300
    assert len(results) == len(work)
    for i, text in results:
        assert text == alone[i], (i, text, alone[i])


def test_full_queue_answers_429_with_retry_after() -> None:
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    app = build_app(MODEL, compression="none", max_queue=1, model_objects=tiny_model("llama"))
    with live_server(app) as url:
        body = {"model": MODEL, "prompt": DOCS[0] + "\n\nGo on.", "max_tokens": 40}
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: httpx.post(f"{url}/v1/completions", json=body, timeout=300), range(4)))
        codes = sorted(r.status_code for r in responses)
        assert codes[0] == 200 and 429 in codes and set(codes) <= {200, 429}
        busy = next(r for r in responses if r.status_code == 429)
        assert int(busy.headers["retry-after"]) >= 1 and busy.json()["error"]["type"] == "rate_limit_error"
        assert httpx.post(f"{url}/v1/completions", json=body, timeout=300).status_code == 200
        assert 'tokenzip_rejected_total' in httpx.get(f"{url}/metrics").text


def _metric(url: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", httpx.get(f"{url}/metrics").text, re.M)
    return float(match.group(1)) if match else 0.0


def test_client_that_disconnects_stops_its_generation() -> None:
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    app = build_app(MODEL, compression="none", model_objects=tiny_model("llama"))
    with live_server(app) as url:
        body = {"model": MODEL, "prompt": "Count on and on", "max_tokens": 3000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
            next(r.iter_lines())  # the first event, then hang up
        deadline = time.monotonic() + 60
        while _metric(url, "tokenzip_cancelled_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(url, "tokenzip_cancelled_total") == 1
        assert _metric(url, "tokenzip_completion_tokens_total") < 3000
        assert httpx.get(f"{url}/health").json()["queue"] == 0
