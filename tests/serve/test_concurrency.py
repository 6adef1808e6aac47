"""Admission and departures: a full server answers 429 with an integer Retry-After of at least 1 second (the requests
held times the measured pace, checked on a set clock), the page's endpoint is admitted and counted like any request,
and a client that leaves stops its generation."""

from __future__ import annotations

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

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


def test_retry_after_is_the_requests_held_times_the_measured_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry-After is ``max(1, round(held x pace))``, the pace being the busy seconds per completed request over the
    last completions (a request that did not complete does not count); on a clock the test sets."""
    from tokenzip.serve import admission as admission_module
    from tokenzip.serve.admission import Admission
    from tokenzip.serve.errors import APIError
    from tokenzip.serve.metrics import Metrics

    now = [100.0]
    monkeypatch.setattr(admission_module.time, "perf_counter", lambda: now[0])
    admission = Admission(3, Metrics())
    assert admission.pace() == 1.0  # before any completion: 1 s per request assumed
    first, second, third = admission.enter(), admission.enter(), admission.enter()  # busy from t = 100
    now[0] = 103.0
    first.release()  # 3 s of busy time for the first completion
    now[0] = 104.0
    second.release()  # then 1 s for the second
    now[0] = 110.0
    third.release(False)  # the client went away: not a completion, its time is not a pace
    third.release()  # idempotent
    assert admission.pending == 0 and admission.pace() == 2.0
    now[0] = 200.0
    held = [admission.enter() for _ in range(3)]
    with pytest.raises(APIError) as err:
        admission.enter()
    assert err.value.status == 429 and err.value.headers["Retry-After"] == str(3 * 2)  # 3 held x 2.0 s
    now[0] = 200.5
    held[0].release()  # a completion 0.5 s into the busy period: the pace is (3 + 1 + 0.5) / 3 = 1.5 s
    held.append(admission.enter())
    with pytest.raises(APIError) as err:
        admission.enter()
    assert err.value.headers["Retry-After"] == str(math.floor(3 * 1.5 + 0.5)) == "5"  # 3 held again: 4.5 s -> 5


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
