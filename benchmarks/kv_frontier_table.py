"""Tables for benchmarks/kv-frontier.md from `tokenzip bench` rows: score, retention and achieved ratio.

    python benchmarks/kv_frontier_table.py RUN [--by-task] [--all-lengths] [--tasks T ...] [--lengths N ...]
        [--samples N] [--bytes]

Each cell: score / vs none / retention / removed (n = samples). Score: mean over samples (%). vs none: % of
the uncompressed score on the same samples. Retention: % of the samples the uncompressed model answers fully
right that the method also answers fully right. Removed: the achieved ratio (entries removed from the
compressed layers), mean over samples. With ``--bytes``: the cache bytes held after compression, mean MiB and %
of the dense cache's bytes on the same samples. Only samples measured for the method and for the uncompressed model
count.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from tokenzip.bench.rows import read_rows


def load(run: Path) -> list[dict]:
    """A bench run's rows: its ``rows.jsonl`` (other .jsonl files beside it, e.g. timing rows, are not bench rows);
    without one, every .jsonl file in the folder."""
    paths = [run / "rows.jsonl"] if (run / "rows.jsonl").exists() else sorted(run.glob("*.jsonl"))
    return [row for path in paths for row in read_rows(path)]


def cells(rows: list[dict], by_task: bool, all_lengths: bool = False) -> dict[tuple, dict]:
    none = {(r["task"], r["length"], r["sample"]): r["score"] for r in rows if r["method"] == "none"}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if (r["task"], r["length"], r["sample"]) in none:
            groups[(r["method"], r["ratio"], r["task"] if by_task else "all", "all" if all_lengths else r["length"])
                   ].append(r)
    out = {}
    for key, rs in groups.items():
        base = [none[(r["task"], r["length"], r["sample"])] for r in rs]
        right = [r for r, b in zip(rs, base) if b == 1.0]
        out[key] = {
            "n": len(rs),
            "score": 100 * sum(r["score"] for r in rs) / len(rs),
            "vs_none": 100 * sum(r["score"] for r in rs) / sum(base) if sum(base) else float("nan"),
            "retention": 100 * sum(r["score"] == 1.0 for r in right) / len(right) if right else float("nan"),
            "removed": sum(r["achieved_ratio"] or 0 for r in rs) / len(rs),
            "held_mib": sum(r["cache_bytes"] for r in rs) / len(rs) / 2**20,
            "held_share": sum(r["cache_bytes"] for r in rs) / sum(r["cache_bytes_before"] for r in rs),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--by-task", action="store_true")
    parser.add_argument("--all-lengths", action="store_true", help="one column over both context lengths")
    parser.add_argument("--tasks", nargs="+", default=None, help="only these tasks")
    parser.add_argument("--lengths", nargs="+", type=int, default=None, help="only these context lengths")
    parser.add_argument("--samples", type=int, default=None, help="only the first N samples of each task and length")
    parser.add_argument("--bytes", action="store_true", help="add the cache bytes held: MiB, % of the dense cache")
    args = parser.parse_args()
    rows = [r for r in load(args.run) if (args.tasks is None or r["task"] in args.tasks)
            and (args.lengths is None or r["length"] in args.lengths)
            and (args.samples is None or r["sample"] < args.samples)]
    table = cells(rows, args.by_task, args.all_lengths)
    lengths = sorted({k[3] for k in table}, key=str)
    tasks = sorted({k[2] for k in table})
    cols = [(t, n) for t in tasks for n in lengths]
    print("| method | ratio | " + " | ".join(f"{t} {n}" for t, n in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for method, ratio in sorted({(k[0], k[1]) for k in table}, key=lambda mr: (mr[0] != "none", mr[0], mr[1])):
        parts = []
        for t, n in cols:
            c = table.get((method, ratio, t, n))
            parts.append("" if c is None else f"{c['score']:.1f} / {c['vs_none']:.0f}% / {c['retention']:.0f}% / "
                         f"{c['removed']:.2f}" + (f" / {c['held_mib']:.1f} MiB = {100 * c['held_share']:.0f}%"
                                                  if args.bytes else "") + f" (n={c['n']})")
        print(f"| {method} | {ratio:g} | " + " | ".join(parts) + " |")


if __name__ == "__main__":
    main()
