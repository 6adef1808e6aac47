"""`tokenzip serve` as a command: a subprocess on a free port, answering, then stopped."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tokenzip.serve.local import free_port


@pytest.mark.slow  # a real server process (imports torch and transformers, then serves)
def test_serve_command_starts_answers_and_stops() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tokenzip.cli", "serve", "--model", "tiny-llama", "--port",
                             str(port), "--compression", "kv:knorm@0.5", "--cache-bytes", "16m",
                             "--min-context-tokens", "2", "--max-batch", "4", "--max-body", "1m"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.3)
        assert health["compression"] == "kv:knorm@0.5" and health["cache_max_bytes"] == 16 << 20
        assert health["min_context_tokens"] == 2 and health["max_batch"] == 4
        assert httpx.post(f"{url}/v1/completions", content=b"x" * (2 << 20)).status_code == 413
        r = httpx.post(f"{url}/v1/completions", json={"model": "tiny-llama", "prompt": "A b c.\n\nD?", "max_tokens": 2},
                       timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["compression"]["spec"] == "kv:knorm@0.5"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_command_refuses_a_bad_default_spec() -> None:
    out = subprocess.run([sys.executable, "-m", "tokenzip.cli", "serve", "--model", "tiny-llama", "--compression",
                          "kv:snapkv@2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "ratio" in out.stderr
