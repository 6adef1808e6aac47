"""Bytes held and decode speed of the packed cache layout against the padded one (issue 28, item 6).

One context (a ``niah_single`` sample of ``--context`` tokens in the model's chat format) is prefilled once;
each method and ratio compresses a copy of it twice, stored packed (tokenzip's default: each (row, KV head) holds
only its own entries, :class:`tokenzip.models.cache_layers.PackedLayer`) and padded (every head sized to the one
that keeps most, the layout before packing, :func:`tokenzip.kv.cache.padded_storage`). For each: the bytes the
cache holds (``tz.kv.cache_bytes``) against the dense cache, the largest transient padded view one attention call
builds (packed only), the greedy answer, the median decoding step (wall clock and this process's CPU time) over
``--repeats`` runs of ``--tokens`` steps after the question, and the median time the cache layers' ``update``
takes per decoding step (summed over layers: the only part of a step where the layouts differ). Configurations
take turns within each repeat, so machine load falls on all alike; CPU time is the steadier figure on a shared
machine. Torch runs on one thread.

    python benchmarks/packed_cache.py --model smollm2-135m --context 1600 --out benchmarks/packed-cache/smollm2.json

Run with an older tokenzip on the path (one that only pads), ``--layouts padded`` measures that tokenzip.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import tokenzip as tz
from tokenzip.bench.prompting import format_sample
from tokenzip.bench.tasks.base import build_sample
from tokenzip.bench.tasks.registry import get_task
from tokenzip.kv.answer import answer_tokens
from tokenzip.kv.cache import layer_entries

try:
    from tokenzip.kv.cache import PackedLayer, padded_storage
except ImportError:  # a tokenzip from before packed storage: it only pads
    PackedLayer, padded_storage = None, None

METHODS = ("kvzip_fast", "kvzip", "adakv", "cur", "snapkv")


def layout(name: str) -> contextlib.AbstractContextManager:
    if name == "padded":
        return padded_storage() if padded_storage is not None else contextlib.nullcontext()
    if padded_storage is None:
        raise SystemExit("this tokenzip has no packed layout: run with --layouts padded")
    return contextlib.nullcontext()


def transient_view_bytes(cache) -> int:
    """The largest padded view a packed layer builds for one attention call (keys and values), before new tokens."""
    views = [layer.stored() * layer.lengths.numel() * layer.packed_keys.shape[-1] * 2 * layer.packed_keys.element_size()
             for layer in cache.layers if PackedLayer is not None and isinstance(layer, PackedLayer)]
    return max(views, default=0)


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def decode_steps(model, comp, ids, steps: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each of ``steps`` decoding steps after the question (its own forward pass excluded)."""
    stamps = [clocks() for _ in answer_tokens(model, comp, ids, steps + 1, stop=set())]
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]


def update_step(cache, news) -> tuple[float, float]:
    """(wall, CPU) seconds the cache layers' ``update`` takes in one decoding step, summed over the layers: where
    the layouts differ (a packed layer builds its padded view there; everything after it sees the same tensors)."""
    steps = [copy.copy(layer) for layer in cache.layers]  # update() assigns new tensors: the cache is left as it is
    start = clocks()
    for step, new in zip(steps, news):
        step.update(new, new)
    end = clocks()
    return end[0] - start[0], end[1] - start[1]


def medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--context", type=int, default=1600)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--layouts", nargs="+", default=["padded", "packed"], choices=["padded", "packed"])
    parser.add_argument("--tokens", type=int, default=64, help="decode steps timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update-repeats", type=int, default=300)
    parser.add_argument("--answer-tokens", type=int, default=24)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()

    model, tok = tz.load_model(args.model)
    sample = build_sample(get_task("niah_single"), lambda s: len(tok(s).input_ids), args.context, 0, 0)
    prompt = format_sample(sample, tok)
    question = "".join(prompt.questions[0])
    q_ids = tok(question, return_tensors="pt", add_special_tokens=False).input_ids
    methods = {(name, ratio): tz.get_method(name, stage="kv", ratio=ratio,
                                            **({"tokenizer": tok} if name.startswith("kvzip") else {}))
               for name in args.methods for ratio in args.ratios}
    pre = tz.kv.prefill(model, tok, prompt.context, list(methods.values()))
    dense = pre.compress(None)
    rows = [{"method": "none", "ratio": 0.0, "layout": "dense", "bytes": dense.bytes, "of_dense": 1.0,
             "answer": tz.kv.answer_from(model, tok, dense, question, args.answer_tokens)[0]}]
    compressed = {}
    for (name, ratio), method in methods.items():
        for lay in args.layouts:
            with layout(lay):
                comp = pre.compress(method)
            compressed[name, ratio, lay] = comp
            rows.append({"method": name, "ratio": ratio, "layout": lay, "bytes": comp.bytes,
                         "of_dense": comp.bytes / dense.bytes, "achieved_ratio": comp.achieved_ratio,
                         "transient_view_bytes": transient_view_bytes(comp.cache) if lay == "packed" else 0,
                         "answer": tz.kv.answer_from(model, tok, comp, question, args.answer_tokens)[0]})
            print(json.dumps(rows[-1]), flush=True)
    caches = {"dense": dense, **{"|".join(map(str, key)): comp for key, comp in compressed.items()}}
    steps: dict[str, list] = {key: [] for key in caches}
    updates: dict[str, list] = {key: [] for key in caches}
    news = {key: [torch.randn(*layer_entries(layer)[0].shape[:2], 1, layer_entries(layer)[0].shape[-1])
                  for layer in comp.cache.layers] for key, comp in caches.items()}
    for _ in range(args.repeats):  # configurations take turns within each repeat: load drift falls on all
        for key, comp in caches.items():
            steps[key] += decode_steps(model, comp, q_ids, args.tokens)
    for _ in range(args.update_repeats):
        for key, comp in caches.items():
            updates[key].append(update_step(comp.cache, news[key]))
    for row in rows:
        key = "dense" if row["layout"] == "dense" else f"{row['method']}|{row['ratio']}|{row['layout']}"
        wall, cpu = medians(steps[key])
        row["decode_step_ms"], row["decode_step_cpu_ms"] = 1e3 * wall, 1e3 * cpu
        row["decode_tokens_per_s"] = 1 / wall
        wall, cpu = medians(updates[key])
        row["update_us"], row["update_cpu_us"] = 1e6 * wall, 1e6 * cpu
    result = {"model": args.model, "context_tokens": pre.n_tokens, "question_tokens": q_ids.shape[1],
              "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "decode_steps": args.tokens, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.platform(), "rows": rows}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{'method':<12}{'ratio':>6} {'layout':<7}{'MB held':>9}{'of dense':>9}{'step ms':>9}{'CPU ms':>8}"
          f"{'update us':>10}{'CPU us':>8}  answer")
    for row in rows:
        print(f"{row['method']:<12}{row['ratio']:>6} {row['layout']:<7}{row['bytes'] / 1e6:>9.2f}"
              f"{row['of_dense']:>9.1%}{row['decode_step_ms']:>9.1f}{row['decode_step_cpu_ms']:>8.1f}"
              f"{row['update_us']:>10.0f}{row['update_cpu_us']:>8.0f}  {row['answer'][:40]!r}")


if __name__ == "__main__":
    main()
