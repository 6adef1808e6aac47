"""Total time of prefill + compression + answer relative to the plain uncompressed run, in one process.

    python benchmarks/kv_frontier_timing.py TASKS.jsonl --methods kvzip kvzip_fast compactor ... \
        [--model smollm2-135m] --ratio 0.5 --repeats 3 --new-tokens 16 --out results/kv-frontier/timing.jsonl
    python benchmarks/kv_frontier_timing.py --table results/kv-frontier/timing.jsonl

TASKS.jsonl comes from ``tokenzip bench ... --export-tasks``. For every task row and method, the plain run
(``tz.kv.prefill`` with no method, then ``tz.kv.answer_from``) and the method's run (``tz.kv.prefill`` capturing
what the method needs, ``Prefill.compress``, ``tz.kv.answer_from``) alternate ``--repeats`` times; each pair
gives one ratio method/plain, and the median of those ratios is reported, for wall-clock time and for the CPU
time of this process (which a machine shared with other jobs disturbs much less). Every answer is exactly
``--new-tokens`` tokens (end-of-sequence is switched off), so both runs decode the same amount. One torch
thread unless ``--threads`` says otherwise. A method spec takes parameters: ``kvzip_fast:tolerance=0.1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import tokenzip as tz
from tokenzip.bench.rows import read_rows
from tokenzip.bench.stages import build_method


def run_once(model, tok, context: str, question: str, method, new_tokens: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process) of prefill + compression + answer."""
    start, cpu = time.perf_counter(), time.process_time()
    pre = tz.kv.prefill(model, tok, context, [method] if method is not None else [])
    compressed = pre.compress(method)
    _, n, _ = tz.kv.answer_from(model, tok, compressed, question, max_new_tokens=new_tokens)
    assert n == new_tokens, n
    return time.perf_counter() - start, time.process_time() - cpu


def table(path: Path) -> str:
    """Markdown: per context and method, the median over its pairs of (method / plain), CPU and wall clock."""
    lines = ["| task | method | ratio | CPU vs plain (median) | wall clock vs plain | plain CPU s | pairs |",
             "|---|---|---|---|---|---|---|"]
    for r in read_rows(path):
        task = r["task"].replace("|", " ")
        lines.append(f"| {task} | {r['method']} | {r['ratio']:g} | {r['median_relative_cpu']:.3f}x | "
                     f"{r['median_relative']:.3f}x | {statistics.median(r['plain_cpu_seconds']):.1f} | "
                     f"{len(r['relative'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", type=Path, nargs="?")
    parser.add_argument("--table", type=Path, help="print the markdown table of a timing file, stop")
    parser.add_argument("--methods", nargs="+")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="first N task rows only")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--model", default="gemma-3-270m", help="a tokenzip model name or directory")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.tasks is None or not args.methods or args.out is None:
        parser.error("give TASKS.jsonl, --methods and --out (or --table FILE)")
    torch.set_num_threads(args.threads)
    model, tok = tz.load_model(args.model)
    model.generation_config.eos_token_id = []  # fixed-length answers: plain and compressed decode alike
    rows = read_rows(args.tasks)[: args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    first = rows[0]
    run_once(model, tok, first["context"], first["question"], None, args.new_tokens)  # warm-up, untimed
    with open(args.out, "a") as out:
        for row in rows:
            question = row["question"] + row.get("answer_prefix", "")
            for spec in args.methods:
                method = build_method("kv", spec, args.ratio)  # parameters read by their types, as the bench does
                plain, timed = [], []
                for _ in range(args.repeats):
                    plain.append(run_once(model, tok, row["context"], question, None, args.new_tokens))
                    timed.append(run_once(model, tok, row["context"], question, method, args.new_tokens))
                wall = [t[0] / p[0] for t, p in zip(timed, plain)]
                cpu = [t[1] / p[1] for t, p in zip(timed, plain)]
                record = {"model": args.model, "task": row["id"], "method": spec, "ratio": args.ratio,
                          "plain_seconds": [p[0] for p in plain], "method_seconds": [t[0] for t in timed],
                          "plain_cpu_seconds": [p[1] for p in plain], "method_cpu_seconds": [t[1] for t in timed],
                          "relative": wall, "median_relative": statistics.median(wall),
                          "relative_cpu": cpu, "median_relative_cpu": statistics.median(cpu),
                          "new_tokens": args.new_tokens, "threads": args.threads, "time": time.strftime("%FT%T"),
                          "load_average": os.getloadavg()[0]}
                out.write(json.dumps(record) + "\n")
                out.flush()
                print(f"{row['id']:28s} {spec:32s} plain {statistics.median(p[0] for p in plain):6.1f}s  "
                      f"wall x{statistics.median(wall):.2f}  cpu x{statistics.median(cpu):.2f}", flush=True)


if __name__ == "__main__":
    main()
