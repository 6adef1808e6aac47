"""Requests that arrive together decode together, and each gets the answer it gets alone (greedy).

Eight clients at once on the tiny llama: questions on one cached document, questions on other documents, short
prompts answered whole, a request with two choices, streamed and not, chat and completions. The model thread is
held for a moment first so that all eight are waiting when it comes back: they then start in one batch. Every
token of every answer alone wins by a margin of at least 1e-5 in log-probability (checked), far above the
1e-7-scale differences between a row computed alone and in a batch, so equality is not luck.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tokenzip.serve.local import live_server

MODEL = "tiny-llama"
DOCS = [" ".join(f"Item {i}: {word} number {i * k % 997}." for i in range(30)) for k, word in
        ((13, "red"), (31, "green"), (57, "blue"))]
WORK: list[tuple[str, dict[str, Any], bool]] = [
    ("completions", {"prompt": f"{DOCS[0]}\n\nWhich number is red?"}, False),
    ("completions", {"prompt": f"{DOCS[0]}\n\nWhich item is last?"}, True),
    ("chat/completions", {"messages": [{"role": "system", "content": DOCS[0]},
                                       {"role": "user", "content": "Which item is first?"}]}, False),
    ("completions", {"prompt": f"{DOCS[1]}\n\nWhich number is green?", "compression": "kv:streaming_llm@0.5"}, True),
    ("chat/completions", {"messages": [{"role": "system", "content": DOCS[2]},
                                       {"role": "user", "content": "Say it."}], "n": 2}, False),
    ("completions", {"prompt": "A short prompt about cats"}, False),
    ("chat/completions", {"messages": [{"role": "user", "content": "Hello there, how are you?"}]}, True),
    ("completions", {"prompt": "Three words only"}, True),
]


def _ask(url: str, path: str, body: dict[str, Any], stream: bool, logprobs: bool = False) -> tuple[list[str], Any]:
    """The texts of every choice (greedy), and the response (not streamed) for its logprobs and usage."""
    body = dict(body, model=MODEL, max_tokens=12, temperature=0, stream=stream)
    if logprobs:
        body.update({"logprobs": True, "top_logprobs": 2} if path.startswith("chat") else {"logprobs": 2})
    if not stream:
        r = httpx.post(f"{url}/v1/{path}", json=body, timeout=300)
        r.raise_for_status()
        data = r.json()
        return [c["message"]["content"] if "message" in c else c["text"] for c in data["choices"]], data
    texts: dict[int, str] = {}
    body["stream_options"] = {"include_usage": True}
    usage = None
    with httpx.stream("POST", f"{url}/v1/{path}", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                usage = event.get("usage") or usage
                for c in event["choices"]:
                    piece = c.get("text") or (c.get("delta") or {}).get("content") or ""
                    texts[c["index"]] = texts.get(c["index"], "") + piece
    return [texts[i] for i in sorted(texts)], {"usage": usage}


def _margins(data: dict[str, Any]) -> list[float]:
    out = []
    for c in data["choices"]:
        lp = c["logprobs"]
        tops = [t["top_logprobs"] for t in lp["content"]] if "content" in lp else \
            [[{"logprob": v} for v in sorted(d.values(), reverse=True)] for d in lp["top_logprobs"]]
        out += [t[0]["logprob"] - t[1]["logprob"] for t in tops if len(t) > 1]
    return out


def _histogram(url: str, rows: int = 1) -> tuple[float, float]:
    """(forward passes with at most ``rows`` rows, all forward passes) from tokenzip_batch_rows."""
    text = httpx.get(f"{url}/metrics").text
    ones = float(re.search(rf'^tokenzip_batch_rows_bucket\{{le="{rows}.0"\}} (\S+)$', text, re.M).group(1))
    return ones, float(re.search(r"^tokenzip_batch_rows_count (\S+)$", text, re.M).group(1))


def _server(max_batch: int) -> Iterator[tuple[str, Any]]:
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    app = build_app(MODEL, compression="kv:snapkv@0.5", max_batch=max_batch, min_context_tokens=64,
                    model_objects=tiny_model("llama"))
    with live_server(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def batched() -> Iterator[tuple[str, Any]]:
    yield from _server(8)


@pytest.fixture(scope="module")
def one_at_a_time() -> Iterator[tuple[str, Any]]:
    yield from _server(1)


def _together(url: str, app: Any) -> list[tuple[list[str], Any]]:
    """All of WORK at once, the model thread held for a second so that every request is waiting when it returns."""
    app.state.backend.scheduler.call(time.sleep, 1.0)
    with ThreadPoolExecutor(len(WORK)) as pool:
        return list(pool.map(lambda w: _ask(url, *w), WORK))


def test_eight_clients_at_once_each_get_their_answer_alone(batched: tuple[str, Any]) -> None:
    url, app = batched
    alone = []
    for path, body, _ in WORK:
        texts, data = _ask(url, path, body, False, logprobs=True)
        assert min(_margins(data)) > 1e-5, "a near-tie decides a token: choose other prompts"
        alone.append(texts)
    assert len({t for texts in alone for t in texts}) >= 6  # different requests answer differently: mixing would show
    ones_before, total_before = _histogram(url)
    results = _together(url, app)
    assert [texts for texts, _ in results] == alone
    ones, total = _histogram(url)
    assert ones - ones_before < total - total_before  # some forward passes ran several rows
    means = [data["usage"]["compression"]["batch_size_mean"] for _, data in results]
    assert max(means) >= 4  # the eight decoded together, not one after another
    cached = [data["usage"]["prompt_tokens_details"]["cached_tokens"] for _, data in results[:3]]
    assert all(c > 0 for c in cached)  # questions on the cached document reused it while batched


def test_one_at_a_time_gives_the_same_answers(batched: tuple[str, Any], one_at_a_time: tuple[str, Any]) -> None:
    url, app = one_at_a_time
    results = _together(url, app)
    expected = [_ask(batched[0], path, body, False)[0] for path, body, _ in WORK]
    assert [texts for texts, _ in results] == expected
    twos, total = _histogram(url, rows=2)
    assert twos == total  # one request per forward pass: at most the two choices of the n=2 request
    means = [data["usage"]["compression"]["batch_size_mean"] for _, data in results]
    assert means == [body.get("n", 1) for _, body, _ in WORK]
