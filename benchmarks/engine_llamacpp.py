"""The llama.cpp engine against plain llama.cpp and the PyTorch path (figures for benchmarks/engine-llamacpp.md).

    python benchmarks/engine_llamacpp.py speed --model smollm2-135m --context 2048 --threads 1 \
        --out benchmarks/engine-llamacpp/speed-smollm2-2k.json
    python benchmarks/engine_llamacpp.py memory --model smollm2-135m --context 7680 --budget 2048 --chunk 512 \
        --threads 1 --out benchmarks/engine-llamacpp/memory-smollm2-8k.json
    python benchmarks/engine_llamacpp.py compare benchmarks/engine-llamacpp/quality-torch \
        benchmarks/engine-llamacpp/quality-llamacpp [--tasks niah_multikey] [--samples N]

Quality comes from `tokenzip bench` runs (the same tasks through ``--engine torch``, with and without
``positions=shared``, and ``--engine llamacpp``); ``compare`` puts their retention side by side.

- ``speed``: one needle sample of ``--context`` tokens (tokenzip's ``niah_single``, formatted as the bench formats it).
  Plain llama.cpp is the same C API driven the same way without tokenzip (a context with no ``cb_eval``, nothing
  evicted; tests/engines/test_llamacpp.py checks it gives llama-cpp-python's ``Llama``'s tokens). For each method
  at ``--ratio``:
  the first question's time to first token (prefill reading the tensors + scoring + eviction + the question),
  a cached question's (the compressed context restored + the question), decode tokens/s after eviction, bytes
  held. The PyTorch path (the same GGUF dequantized, eager) gives the same figures for ``--torch-methods`` (none and
  snapkv by default). Medians of
  ``--repeats`` after a warm-up, each in wall-clock and in CPU seconds (the machine is shared: CPU seconds are
  what the work costs, wall-clock what a user waits under that load).
- ``memory``: peak RSS (``VmHWM``) of fresh processes that import the same modules (tokenzip, torch, llama-cpp-python)
  and load the same GGUF, then: plain llama.cpp with an ``n_ctx`` that holds the whole document; the engine with a
  chunked prefill (``--budget`` kept, ``--chunk`` per chunk) in an ``n_ctx`` of budget + chunk + the answer; the
  engine reading the document whole. Each child reports its RSS before the llama.cpp context exists, too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DECODE_TOKENS = 64


def sample_prompt(model: str, context: int, index: int = 0) -> tuple[str, str]:
    """(context, question + answer prefix) of tokenzip's niah_single sample ``index`` at ``context`` tokens."""
    from tokenzip.bench.models import load_tokenizer
    from tokenzip.bench.prompting import format_sample
    from tokenzip.bench.tasks.base import build_sample
    from tokenzip.bench.tasks.registry import get_task

    tok = load_tokenizer(model)
    sample = build_sample(get_task("niah_single"), lambda t: len(tok(t, add_special_tokens=False).input_ids),
                          context, index, 0)
    prompt = format_sample(sample, tok, "auto")
    question, prefix = prompt.questions[0]
    return prompt.context, question + prefix


class Clock:
    """Wall-clock and CPU seconds (this process, every thread) of a block: on a shared machine the CPU seconds
    are what the work costs, the wall clock what a user waits for under that load."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def medians(clocks: list[Clock]) -> dict[str, float]:
    return {"wall_s": statistics.median(c.wall for c in clocks), "cpu_s": statistics.median(c.cpu for c in clocks)}


def rss() -> dict[str, int]:
    """This process's resident set now and at its peak (bytes), from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return {"rss": out["VmRSS"], "peak": out["VmHWM"]}


def decode_rate(ctx: Any, first: int, position: int, n: int = DECODE_TOKENS) -> dict[str, float]:
    """Tokens per wall and per CPU second of ``n`` greedy single-token decodes (end of generation ignored), the loop
    the engine decodes with."""
    token = first
    with Clock() as clock:
        for i in range(n):
            ctx.decode([token], position + i, logits="last")
            token = int(np.argmax(ctx.logits()))
    return {"tok_per_wall_s": n / clock.wall, "tok_per_cpu_s": n / clock.cpu}


# --- speed -----------------------------------------------------------------------------------------------------
def speed(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import tokenzip as tz
    from tokenzip.engines.llamacpp.engine import LlamaCppEngine
    from tokenzip.engines.llamacpp.gguf import gguf_path
    from tokenzip.engines.llamacpp.lib import LlamaContext
    from tokenzip.kv.answer import answer_tokens

    torch.set_num_threads(args.threads)
    path = gguf_path(args.model)
    context, question = sample_prompt(args.model, args.context)
    engine = LlamaCppEngine(path, threads=args.threads)
    ids, q_ids = engine.tokenize(context, True), engine.tokenize(question, False)
    n_ctx = len(ids) + len(q_ids) + DECODE_TOKENS + 64
    out: dict[str, Any] = {"model": args.model, "gguf": path.name, "context_tokens": len(ids), "threads": args.threads,
                           "repeats": args.repeats, "ratio": args.ratio, "load_before": os.getloadavg()}

    # plain llama.cpp: the same C API driven the same way, a context with no callback, nothing evicted
    plain = LlamaContext(engine.model, n_ctx, threads=args.threads)
    plain.decode(ids[: len(ids) // 4], 0, logits="none")  # warm-up
    prefills, ttfts = [], []
    for _ in range(args.repeats):
        plain.clear()
        with Clock() as ttft:  # a question with the document re-read: its prefill, then the question
            with Clock() as prefill:
                plain.decode(ids, 0, logits="none")
            plain.decode(q_ids, len(ids))
            first = int(np.argmax(plain.logits()))
        prefills.append(prefill)
        ttfts.append(ttft)
    out["plain"] = {"prefill": medians(prefills), "ttft": medians(ttfts),
                    "decode": decode_rate(plain, first, len(ids) + len(q_ids))}
    plain.close()
    print("plain", json.dumps(out["plain"]), file=sys.stderr)

    # the engine: each method's first question, cached questions, decode after eviction
    out["engine"] = {}
    for name in args.methods:
        method = None if name == "none" else tz.get_method(name, stage="kv", ratio=args.ratio)
        engine.prefill(context[: len(context) // 4], [method] if method else [])  # warm-up
        firsts, prefill_s, compress_s = [], [], []
        for _ in range(args.repeats):
            with Clock() as clock:
                pre = engine.prefill(context, [method] if method else [])
                compressed = engine.compress(pre, method)
                next(engine.generate(compressed, q_ids, 1))
            firsts.append(clock)
            prefill_s.append(pre.seconds)
            compress_s.append(compressed.compress_seconds)
        cached = []
        for _ in range(args.repeats):
            with Clock() as clock:
                next(engine.generate(compressed, q_ids, 1))
            cached.append(clock)
        ctx = engine.context(1)
        ctx.load(compressed.state.data)
        ctx.decode(q_ids, len(ids))
        out["engine"][name] = {
            "ttft_first": medians(firsts), "prefill_wall_s": statistics.median(prefill_s),
            "compress_wall_s": statistics.median(compress_s), "ttft_cached": medians(cached),
            "decode": decode_rate(ctx, int(np.argmax(ctx.logits())), len(ids) + len(q_ids)),
            "kept": compressed.kept, "bytes": compressed.bytes, "dense_bytes": pre.bytes}
        print(name, json.dumps(out["engine"][name]), file=sys.stderr)
    engine.close()

    # the PyTorch path: the same weights dequantized, eager transformers
    model, tok = tz.load_model(args.model)
    tids = torch.tensor([q_ids])
    out["torch"] = {}
    for name in args.torch_methods:
        method = None if name == "none" else tz.get_method(name, ratio=args.ratio)
        tz.kv.prefill(model, tok, context[: len(context) // 4], [method] if method else [])  # warm-up
        firsts, cached = [], []
        for _ in range(args.repeats):
            with Clock() as clock:
                pre = tz.kv.prefill(model, tok, context, [method] if method else [])
                compressed = pre.compress(method)
                next(answer_tokens(model, compressed, tids, 1, stop=set()))
            firsts.append(clock)
        for _ in range(args.repeats):
            tokens = answer_tokens(model, compressed, tids, DECODE_TOKENS + 1, stop=set())
            with Clock() as clock:
                next(tokens)
            cached.append(clock)
            with Clock() as decoding:
                n = sum(1 for _ in tokens)
        out["torch"][name] = {"ttft_first": medians(firsts), "ttft_cached": medians(cached),
                              "decode": {"tok_per_wall_s": n / decoding.wall, "tok_per_cpu_s": n / decoding.cpu},
                              "bytes": compressed.bytes}
        print("torch", name, json.dumps(out["torch"][name]), file=sys.stderr)
    out["load_after"] = os.getloadavg()
    return out


# --- memory ------------------------------------------------------------------------------------------------------
def memory(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"model": args.model, "context": args.context, "budget": args.budget, "chunk": args.chunk,
                           "threads": args.threads, "load_before": os.getloadavg(), "runs": {}}
    for case in ("plain", "chunked", "whole"):
        command = [sys.executable, __file__, "memory-child", case, "--model", args.model, "--context",
                   str(args.context), "--budget", str(args.budget), "--chunk", str(args.chunk), "--threads",
                   str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        out["runs"][case] = json.loads(done.stdout.strip().splitlines()[-1])
        print(case, out["runs"][case], file=sys.stderr)
    out["load_after"] = os.getloadavg()
    return out


def memory_child(args: argparse.Namespace) -> dict[str, Any]:
    import torch  # noqa: F401 - every child imports the same modules

    import tokenzip as tz
    from tokenzip.engines.llamacpp.engine import LlamaCppEngine
    from tokenzip.engines.llamacpp.gguf import gguf_path
    from tokenzip.engines.llamacpp.lib import LlamaContext

    context, question = sample_prompt(args.model, args.context)
    answer_cells = 128  # the question and 16 answer tokens
    n_ctx = args.budget + args.chunk + answer_cells if args.case == "chunked" else None
    engine = LlamaCppEngine(gguf_path(args.model), n_ctx=n_ctx, threads=args.threads)
    ids, q_ids = engine.tokenize(context, True), engine.tokenize(question, False)
    before = rss()
    if args.case == "plain":
        ctx = LlamaContext(engine.model, len(ids) + answer_cells, threads=args.threads)
        ctx.decode(ids, 0, logits="none")
        ctx.decode(q_ids, len(ids))
        n_ctx, kept = ctx.n_ctx, len(ids)
        text = ""
    else:
        method = tz.get_method("snapkv", budget=args.budget)
        pre = engine.prefill(context, [method], chunk_size=args.chunk if args.case == "chunked" else None)
        compressed = engine.compress(pre, method)
        text = engine.detokenize(list(engine.generate(compressed, q_ids, 16)))
        n_ctx, kept = engine._ctx.n_ctx, compressed.kept
    return {"case": args.case, "context_tokens": len(ids), "n_ctx": n_ctx, "kept": kept, "answer": text,
            "rss_before_context": before["rss"], "peak_rss": rss()["peak"]}


# --- quality side by side -------------------------------------------------------------------------------------------
def compare(args: argparse.Namespace) -> str:
    from tokenzip.bench.aggregate import aggregate
    from tokenzip.bench.rows import load_rows

    rows, seen = [], set()
    for row in (r for d in args.dirs for r in load_rows(d)):  # a row in two directories (the baseline) counts once
        ident = (row.get("engine", "tokenzip"), row["key"])
        if ident not in seen and (not args.tasks or row.get("task") in args.tasks) and (
                args.samples is None or row["sample"] < args.samples):
            seen.add(ident)
            rows.append(row)
    table = {(e["engine"], e["method"], e["ratio"], e["length"]): e for e in aggregate(rows, by=("length",))}
    lines = ["| context | method | ratio | llama.cpp score / retention (n) | PyTorch shared positions "
             "| PyTorch per head | llama.cpp / PyTorch retention |", "|---|---|---|---|---|---|---|"]
    keys = sorted({(k[3], k[1].split(":")[-1] if k[0] == "llamacpp" else k[1], k[2]) for k in table
                   if k[0] == "llamacpp"}, key=lambda k: (k[0], k[1] != "none", k[1], k[2]))

    def cell(e: dict | None) -> str:
        if e is None:
            return "-"
        retention = "-" if e.get("retention") is None else f"{e['retention']:.1f}"
        return f"{e['score']:.1f} / {retention} ({e['n']})"

    for length, name, ratio in keys:
        ours = table.get(("llamacpp", f"llamacpp:{name}", ratio, length))
        shared_name = name if name == "none" else f"{name}:positions=shared"
        shared = table.get(("tokenzip", shared_name, ratio, length))
        per_head = table.get(("tokenzip", name, ratio, length))
        ratio_text = "-"
        if ours and per_head and ours.get("retention") is not None and per_head.get("retention"):
            ratio_text = f"{100 * ours['retention'] / per_head['retention']:.0f}%"
        lines.append(f"| {length} | {name} | {ratio:g} | {cell(ours)} | {cell(shared)} | {cell(per_head)} | "
                     f"{ratio_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    for name in ("speed", "memory", "memory-child"):
        p = sub.add_parser(name)
        if name == "memory-child":
            p.add_argument("case", choices=("plain", "chunked", "whole"))
        p.add_argument("--model", default="smollm2-135m")
        p.add_argument("--context", type=int, default=2048)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--out")
        if name == "speed":
            p.add_argument("--methods", nargs="+", default=["none", "streaming_llm", "snapkv", "compactor",
                                                           "kvzip_fast", "kvzip"])
            p.add_argument("--torch-methods", nargs="*", default=["none", "snapkv"],
                           help="the methods measured in the PyTorch path too")
            p.add_argument("--ratio", type=float, default=0.5)
            p.add_argument("--repeats", type=int, default=3)
        else:
            p.add_argument("--budget", type=int, default=2048)
            p.add_argument("--chunk", type=int, default=512)
    p = sub.add_parser("compare")
    p.add_argument("dirs", nargs="+", help="bench run directories (llama.cpp, PyTorch shared, PyTorch per head)")
    p.add_argument("--tasks", nargs="*", help="only these tasks' rows (e.g. when a directory holds more tasks)")
    p.add_argument("--samples", type=int, help="only samples 0 .. N-1 of each task (the same samples everywhere)")
    args = parser.parse_args()
    if args.part == "compare":
        print(compare(args))
        return
    result = {"speed": speed, "memory": memory, "memory-child": memory_child}[args.part](args)
    text = json.dumps(result, indent=2, default=str)
    if getattr(args, "out", None):
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(json.dumps(result, default=str) if args.part == "memory-child" else text)


if __name__ == "__main__":
    main()
