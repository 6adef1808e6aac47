"""Admission and departures: a full server answers 429 with a Retry-After close to the real drain time, the page's
endpoint is admitted and counted like any request, and a client that leaves stops its generation."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tokenzip.serve.local import live_server

MODEL = "tiny-llama"
DOCS = [" ".join(f"Item {i}: {word} number {i * k % 997}." for i in range(30)) for k, word in
        ((13, "red"), (31, "green"), (57, "blue"))]


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


def _long(url: str, eos: int, tokens: int) -> tuple[httpx.Response, float]:
    """A greedy completion of exactly ``tokens`` tokens (end-of-sequence suppressed), and when it returned."""
    body = {"model": MODEL, "prompt": "Count on", "max_tokens": tokens, "temperature": 0,
            "logit_bias": {str(eos): -100}}
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=300)
    return r, time.monotonic()


def test_retry_after_is_within_2x_of_the_measured_drain_time() -> None:
    """Retry-After (the measured pace x the requests held) is within 2x of the time the held requests really take.
    Wall clock on a shared machine swings: a second measurement is taken only when the first is outside 2x (a wrong
    estimate is outside on both)."""
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    model, tok = tiny_model("llama")
    app = build_app(MODEL, compression="none", max_queue=4, model_objects=(model, tok))
    with live_server(app) as url:
        tokens = 200
        for _ in range(2):  # bounded bursts first: the server measures its pace at this load
            with ThreadPoolExecutor(4) as pool:
                assert all(r.status_code == 200 for r, _ in pool.map(lambda _: _long(url, tok.eos_token_id, tokens),
                                                                     range(4)))
        measured = []
        for _ in range(2):
            app.state.backend.scheduler.call(time.sleep, 0.3)  # the next four are all held when the fifth arrives
            with ThreadPoolExecutor(4) as pool:
                running = [pool.submit(_long, url, tok.eos_token_id, tokens) for _ in range(4)]
                while httpx.get(f"{url}/health").json()["queue"] < 4:
                    time.sleep(0.01)
                refused = httpx.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1})
                asked = time.monotonic()
                finished = max(f.result()[1] for f in running)
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
            retry_after, drain = int(refused.headers["retry-after"]), finished - asked
            assert drain >= 0.5  # the bound is not met by rounding alone (Retry-After is whole seconds, at least 1)
            measured.append((retry_after, drain))
            if drain / 2 <= retry_after <= 2 * drain:
                break
        else:
            raise AssertionError(f"Retry-After outside 2x of the drain twice: {measured}")


def test_the_page_endpoint_is_admitted_and_counted() -> None:
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    model, tok = tiny_model("llama")
    app = build_app(MODEL, compression="none", max_queue=1, model_objects=(model, tok))
    page = {"text": "One sentence. Another sentence.", "compression": "prompt:head@0.5"}
    with live_server(app) as url:
        with ThreadPoolExecutor(1) as pool:
            app.state.backend.scheduler.call(time.sleep, 0.5)
            running = pool.submit(_long, url, tok.eos_token_id, 20)
            while httpx.get(f"{url}/health").json()["queue"] < 1:
                time.sleep(0.01)
            busy = httpx.post(f"{url}/v1/tokenzip/compress", json=page, timeout=60)
            assert running.result()[0].status_code == 200
        assert busy.status_code == 429 and "retry-after" in busy.headers
        assert httpx.post(f"{url}/v1/tokenzip/compress", json=page, timeout=60).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert 'tokenzip_requests_total{endpoint="compress",status="429"} 1.0' in metrics
        assert 'tokenzip_requests_total{endpoint="compress",status="200"} 1.0' in metrics
        assert 'tokenzip_request_seconds_count{endpoint="compress"} 1.0' in metrics
