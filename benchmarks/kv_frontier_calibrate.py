"""How much each ratio="auto" method's estimated loss grows with the ratio, per layer, on real contexts.

    python benchmarks/kv_frontier_calibrate.py TASKS.jsonl [--rows 0,3,6,9] [--kvzip]

TASKS.jsonl comes from ``tokenzip bench ... --export-tasks`` (use another --seed than the benchmark's). For each
context and each of compactor, leverage, cur and kvzip_fast, prints the estimated loss (the share of the method's
mass outside the kept entries, see tokenzip/kv/auto.py) of each compressed layer at ratios 0.5, 0.75, 0.875 and
0.95; the default tolerances were read off these curves. ``--kvzip`` also runs KVzip's replay and prints how many
of its top 50% / 25% entries per layer kvzip_fast's estimate (no second pass) keeps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import tokenzip as tz
from tokenzip.bench.rows import read_rows
from tokenzip.kv.runtime import KVRuntime
from tokenzip.ops.topk import ranked

RATIOS = (0.5, 0.75, 0.875, 0.95)


def contexts(pre, method):
    """The method's layer contexts on a prefill, with its whole-model pass done."""
    runtime = KVRuntime.over_prefill(pre, method)
    ctxs = [runtime.context(pre.cache, i) for i in runtime.targets]
    if method.needs_whole_model():
        with torch.no_grad(), runtime.attached():
            runtime.prepare(method, ctxs, pre.cache)
    return ctxs


def loss_curve(method, ctx) -> list[float]:
    scores, mass = method.score_and_mass(method.own_queries(ctx))
    scores = scores.float().expand(*ctx.keys.shape[:3])
    share = mass.float().expand_as(scores)
    share = share / share.sum(-1, keepdim=True)
    kept = share.gather(-1, ranked(scores)).cumsum(-1)[0].mean(0)  # mean over heads
    n = kept.shape[0]
    return [float(1 - kept[n - int(n * r) - 1]) for r in RATIOS]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks", type=Path)
    parser.add_argument("--rows", default=None, help="comma-separated row numbers (default: all)")
    parser.add_argument("--kvzip", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tok = tz.load_model("gemma-3-270m")
    rows = read_rows(args.tasks)
    if args.rows:
        rows = [rows[int(i)] for i in args.rows.split(",")]
    names = ("kvzip_fast", "compactor", "leverage", "cur")
    for row in rows:
        methods = {n: tz.get_method(n, ratio="auto") for n in names}
        pre = tz.kv.prefill(model, tok, row["context"], list(methods.values()))
        print(f"{row['id']} ({pre.n_tokens} tokens); loss at ratio {'/'.join(map(str, RATIOS))} per layer")
        for name, method in methods.items():
            curves = [loss_curve(method, ctx) for ctx in contexts(pre, method)]
            print(f"  {name:11s}", " | ".join(" ".join(f"{v:.3f}" for v in c) for c in curves))
        if args.kvzip:
            exact = {c.layer_idx: c.extra["kvzip"][0, 0] for c in contexts(pre, tz.get_method("kvzip"))}
            fast = {c.layer_idx: c.extra["kvzip"][0, 0] for c in contexts(pre, methods["kvzip_fast"])}
            parts = []
            for i, a in exact.items():
                for q in (0.5, 0.25):
                    k = int(a.shape[0] * q)
                    both = set(a.topk(k).indices.tolist()) & set(fast[i].topk(k).indices.tolist())
                    parts.append(f"layer {i} top {q:g}: {len(both) / k:.2f}")
            print("  kvzip_fast keeps of kvzip's top entries:", ", ".join(parts))


if __name__ == "__main__":
    main()
