"""Ray Serve: two replicas of the tiny-llama server on a local Ray instance, each with its own cache."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tokenzip.serve.local import free_port

DOC = " ".join(f"Shelf {i} holds {i * 11 % 97} jars of jam." for i in range(40))


@pytest.fixture(scope="module")
def ray_server() -> Iterator[str]:
    ray = pytest.importorskip("ray", reason="ray is missing: pip install 'tokenzip[ray]'")
    serve = pytest.importorskip("ray.serve", reason="Ray Serve is missing: pip install 'ray[serve]'")
    from tokenzip.serve.ray_app import deployment

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = {"model": "tiny-llama", "compression": "kv:snapkv@0.5", "cache_bytes": 64 << 20,
                   "min_context_tokens": 64}
        serve.run(deployment(options, replicas=2, num_cpus=0.5), name="tokenzip", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one Ray instance at a time when the suite runs in parallel (pytest -n)
def test_two_replicas_answer_alike_with_their_own_caches(ray_server: str) -> None:
    import openai

    pids = {httpx.get(f"{ray_server}/health", timeout=30).json()["pid"] for _ in range(20)}
    assert len(pids) == 2  # two replicas, two processes
    client = openai.OpenAI(base_url=f"{ray_server}/v1", api_key="unused", max_retries=0, timeout=120)
    answers, cached = set(), []
    for _ in range(6):
        r = client.completions.create(model="tiny-llama", prompt=DOC + "\n\nHow many jars on shelf 3?", max_tokens=5,
                                      temperature=0)
        answers.add(r.choices[0].text)
        cached.append(r.usage.prompt_tokens_details.cached_tokens)
    assert len(answers) == 1  # every replica gives the same answer
    misses = sum(1 for c in cached if c == 0)
    assert 1 <= misses <= 2 and cached.count(0) + sum(1 for c in cached if c > 0) == 6  # at most one per replica
