"""Long contexts: dense prefill against chunked prefill with compression between chunks (benchmarks/long-context.md).

Each configuration (``none`` = a dense prefill; ``chunked:chunk_size=1024`` = the plain chunked prefill, the
same chunks through transformers' own cache with nothing compressed (:func:`tokenzip.kv.plain_chunked_prefill`);
or a kv method spec such as ``snapkv:budget=4096,chunk_size=1024``) runs at each context length in a process
of its own, so one configuration's peak memory is not another's (and a dense prefill too large for the machine
fails alone). Inside, the samples go through the bench's own kv path (:func:`tokenzip.bench.stages.kv.run`: prefill,
compression, answers, peak RSS per phase), and every row is appended to ``--out`` as soon as it is measured.
A configuration whose rows are already there is skipped, so an interrupted run resumes.

    python benchmarks/long_context.py --context 8k --samples 4 --out results/long/rows.jsonl \\
        --configs none snapkv:budget=2048,chunk_size=1024 kvzip:budget=2048,chunk_size=1024
    python benchmarks/long_context.py --context 8k --samples 4 --out results/long/rows.jsonl \\
        --configs chunked:chunk_size=1024                                  # the same chunks, nothing compressed
    python benchmarks/long_context.py --table results/long/rows.jsonl     # the tables of long-context.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import types
from collections import defaultdict
from pathlib import Path
from statistics import median

from tokenzip.bench.rows import read_rows

TASKS = ("niah_single", "niah_multikey", "qa", "two_facts")
PLAIN = "chunked"  # the plain chunked prefill's config name: chunked:chunk_size=N


def tokens(text: str) -> int:
    return int(text.lower().replace("k", "000")) if text.lower().endswith("k") else int(text)


def done_keys(out: Path) -> set[str]:
    return {f"{row['length']}|{row['config']}|{row['task']}|{row['sample']}" for row in read_rows(out)}


def plain_chunk_size(config: str) -> int | None:
    """N for the plain chunked prefill's config ``chunked:chunk_size=N``; None for any other config."""
    name, _, params = config.partition(":")
    if name != PLAIN:
        return None
    key, _, value = params.partition("=")
    if key != "chunk_size" or not value.isdigit():
        raise SystemExit(f"{config!r}: the plain chunked prefill is written chunked:chunk_size=N")
    return int(value)


def run_plain_chunked(worker, prompt, questions: list[str], max_new: int, chunk_size: int, cpu: dict) -> dict:
    """The plain chunked prefill measured as the bench's kv stage measures a chunked method (peak RSS of the prefill
    and of answering, cache bytes), then every question answered from the uncompressed cache."""
    import tokenzip as tz
    from tokenzip.bench.measure import PeakMemory, synchronize
    from tokenzip.bench.stages import kv as kv_stage

    with PeakMemory(worker.device) as prefill_peak:
        start = time.process_time()
        pre = tz.kv.plain_chunked_prefill(worker.model, worker.tokenizer, prompt.context, chunk_size)
        cpu["prefill"] = time.process_time() - start
        compressed = pre.compress(None)
        synchronize(worker.device)
    return kv_stage.answered(worker, f"{PLAIN}:chunk_size={chunk_size}", 0.0, pre, compressed, questions, max_new,
                             prefill_peak)


def run_config(args: argparse.Namespace, length: int, config: str) -> None:
    """One configuration at one length, all samples, in this process."""
    import torch

    import tokenzip as tz
    from tokenzip.bench.measure import environment
    from tokenzip.bench.prompting import format_sample
    from tokenzip.bench.scoring import string_score
    from tokenzip.bench.stages import kv as kv_stage
    from tokenzip.bench.tasks import build_sample, get_task

    torch.set_num_threads(args.threads)
    model, tok = tz.load_model(args.model)
    cpu: dict[str, float] = {}
    dense_prefill = tz.kv.prefill

    def timed_prefill(*a, **kw):  # CPU seconds beside wall clock: on a shared machine the wall clock is mostly waiting
        start = time.process_time()
        try:
            return dense_prefill(*a, **kw)
        finally:
            cpu["prefill"] = time.process_time() - start

    tz.kv.prefill = timed_prefill
    config_ns = types.SimpleNamespace(query_aware=False, shared_prefill=True, max_new_tokens=None)
    worker = types.SimpleNamespace(model=model, tokenizer=tok, device="cpu", config=config_ns,
                                   max_new_tokens=lambda s: s.max_new_tokens)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False).input_ids)

    done = done_keys(Path(args.out))
    warm = build_sample(get_task("niah_single"), count, 256, 0, seed=-1)  # first-call overheads, untimed
    list(kv_stage.run(worker, warm, format_sample(warm, tok, "auto"), [("none", 0.0)]))
    for task in args.tasks:
        for index in range(args.samples):
            if f"{length}|{config}|{task}|{index}" in done:
                continue
            sample = build_sample(get_task(task), count, length, index, seed=0)
            prompt = format_sample(sample, tok, "auto")
            started = time.perf_counter()
            chunk_size = plain_chunk_size(config)
            if chunk_size:
                questions = [q + p for q, p in prompt.questions]
                m = run_plain_chunked(worker, prompt, questions, worker.max_new_tokens(sample), chunk_size, cpu)
            else:
                (m,) = kv_stage.run(worker, sample, prompt, [(config, 0.0)])
            scores = [string_score(sample.metric, p, q.answers) for p, q in zip(m["predictions"], sample.questions)]
            row = {"length": length, "config": config, "task": task, "sample": index,
                   "prefill_cpu_seconds": cpu.get("prefill"), "load_average": os.getloadavg()[0],
                   "score": sum(scores) / len(scores), "answers": [q.answers for q in sample.questions],
                   "metadata": sample.metadata,
                   "wall_seconds": time.perf_counter() - started, "threads": args.threads, **m,
                   **environment("cpu"), "command": shlex.join(["python", *sys.argv])}
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{length} {config} {task} #{index}: score {row['score']:.2f}, prefill {m['prefill_seconds']:.1f} s, "
                  f"peak prefill {m['prefill_peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)


def sweep(args: argparse.Namespace) -> int:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for length in args.context:
        for config in args.configs:
            done = done_keys(Path(args.out))
            if all(f"{length}|{config}|{t}|{i}" in done for t in args.tasks for i in range(args.samples)):
                continue
            cmd = [sys.executable, __file__, "--one", "--context", str(length), "--configs", config,
                   "--tasks", *args.tasks, "--samples", str(args.samples), "--out", args.out,
                   "--threads", str(args.threads), "--model", args.model]
            started = time.time()
            try:
                proc = subprocess.run(cmd, timeout=args.timeout)
                failure = None if proc.returncode == 0 else f"exit status {proc.returncode}" + (
                    " (killed: out of memory?)" if proc.returncode in (-9, 137) else "")
            except subprocess.TimeoutExpired:
                failure = f"did not finish within {args.timeout} s"
            if failure:
                note = {"length": length, "config": config, "failed": failure, "seconds": time.time() - started,
                        "command": shlex.join(cmd)}
                with open(Path(args.out).with_suffix(".failures.jsonl"), "a") as f:
                    f.write(json.dumps(note) + "\n")
                print(f"{length} {config}: {failure}", flush=True)
    return 0


# --- tables ---------------------------------------------------------------------------------------------
def load(paths: list[str]) -> list[dict]:
    return [row for path in paths for row in read_rows(path)]


def table(paths: list[str]) -> str:
    """One line per context length and configuration: score, retention over the samples the dense model answers
    right, median prefill seconds, wall clock and CPU (rows measured with one torch thread only, when there are
    such rows), peak RSS
    of the prefill (absolute, and above the RSS it started from), peak RSS while answering, cache bytes."""
    rows = load(paths)
    dense = {(r["length"], r["task"], r["sample"]): r["score"] for r in rows if r["config"] == "none"}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["length"], r["config"])].append(r)
    lines = ["| context | config | n | score | retention | prefill s (CPU s) | compress s | prefill peak RSS MiB "
             "(above start) | answer peak RSS MiB | cache MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (length, config), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "none", kv[0][1])):
        right = [r["score"] for r in group if dense.get((length, r["task"], r["sample"]), 0) >= 1.0]
        retention = f"{100 * sum(right) / len(right):.0f}% of {len(right)}" if right and config != "none" else ""
        timed = [r for r in group if r.get("threads") == 1] or group
        peak = median(r["prefill_peak_rss_bytes"] for r in group) / 2**20
        over = median(r["prefill_peak_rss_bytes"] - r["rss_start_bytes"] for r in group) / 2**20
        cpu = [r["prefill_cpu_seconds"] for r in timed if r.get("prefill_cpu_seconds") is not None]
        cpu_text = f" ({median(cpu):.0f})" if cpu else ""
        lines.append(
            f"| {length} | {config} | {len(group)} | {100 * sum(r['score'] for r in group) / len(group):.0f} | "
            f"{retention} | {median(r['prefill_seconds'] for r in timed):.0f}{cpu_text} | "
            f"{median(r['compress_seconds'] for r in timed):.0f} | {peak:.0f} ({over:.0f}) | "
            f"{median(r['decode_peak_rss_bytes'] for r in group) / 2**20:.0f} | "
            f"{median(r['cache_bytes'] for r in group) / 2**20:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--context", nargs="+", type=tokens, default=[8000])
    parser.add_argument("--configs", nargs="+", default=["none"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--out", default="results/long/rows.jsonl")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per configuration and length")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", nargs="+", metavar="ROWS", help="print the markdown table of rows files, stop")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return 0
    if args.one:
        run_config(args, args.context[0], args.configs[0])
        return 0
    return sweep(args)


if __name__ == "__main__":
    sys.exit(main())
