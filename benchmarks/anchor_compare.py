"""tokenzip's kv rows beside kvpress's (benchmarks/anchors/kvpress_run.py) on the samples both have.

    python benchmarks/anchor_compare.py TOKENZIP_ROWS.jsonl KVPRESS_ROWS.jsonl [--by-task] [--methods ...]

For each method and ratio present in both files, only the samples (task, length, sample) that both files
have for that method and ratio AND for ``none`` are compared. Printed per method and ratio (markdown):

- ``n``: those samples; ``score``: mean score (%);
- ``vs none``: the score as % of the engine's own uncompressed score on the same n samples;
- ``retention``: mean score on the samples the engine's own uncompressed run got fully right (%), with their
  count in brackets;
- ``kept``: mean fraction of the context's cache entries kept (1 - achieved ratio), per head and layer;
- ``seconds``: mean seconds per sample, prefill + compression + question + answer. tokenzip's prefill is
  shared by every method of a sample (one prefill, then each method compresses a copy) and captures what all
  of them need, so ``tz s`` charges each method that whole shared prefill; kvpress prefills once per press
  (compression inside). ``tz c`` is tokenzip's compression alone;
- ``same``: samples on which the two engines' scores are equal.

The ``none`` row also gives ``same predictions``: samples whose uncompressed answers are identical text, a
check that both engines read the same inputs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable
from statistics import fmean
from typing import Any

from tokenzip.bench.rows import read_rows

Sample = tuple[str, int, int]


def by_cell(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, float], dict[Sample, dict[str, Any]]]:
    """``{(method, ratio): {(task, length, sample): row}}``."""
    cells: dict[tuple[str, float], dict[Sample, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        cells[(row["method"], round(float(row["ratio"]), 6))][(row["task"], row["length"], row["sample"])] = row
    return cells


def seconds(row: dict[str, Any]) -> float:
    return sum(row.get(k) or 0.0 for k in ("prefill_seconds", "compress_seconds", "decode_seconds"))


def kept(row: dict[str, Any]) -> float:
    return 1.0 - (row.get("achieved_ratio") or 0.0)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def side(rows: dict[Sample, dict], none: dict[Sample, dict], samples: list[Sample]) -> dict[str, Any]:
    """One engine's figures on ``samples``."""
    score = fmean(rows[s]["score"] for s in samples)
    base = fmean(none[s]["score"] for s in samples)
    right = [s for s in samples if none[s]["score"] == 1.0]
    return {"score": score, "vs_none": score / base if base else None,
            "retention": fmean(rows[s]["score"] for s in right) if right else None, "right": len(right),
            "kept": fmean(kept(rows[s]) for s in samples), "seconds": fmean(seconds(rows[s]) for s in samples),
            "compress": fmean(rows[s].get("compress_seconds") or 0.0 for s in samples)}


def compare(tokenzip_rows: list[dict], kvpress_rows: list[dict], methods: list[str] | None = None,
            tasks: list[str] | None = None) -> list[dict[str, Any]]:
    """One record per (method, ratio) both engines ran, on the samples both have (with ``none`` in both)."""
    if tasks:
        tokenzip_rows = [r for r in tokenzip_rows if r["task"] in tasks]
        kvpress_rows = [r for r in kvpress_rows if r["task"] in tasks]
    tz, kp = by_cell(tokenzip_rows), by_cell(kvpress_rows)
    tz_none, kp_none = tz.get(("none", 0.0), {}), kp.get(("none", 0.0), {})
    records = []
    for cell in sorted(set(tz) & set(kp), key=lambda c: (c[0] != "none", c[0], c[1])):
        if methods and cell[0] not in methods and cell[0] != "none":
            continue
        samples = sorted(set(tz[cell]) & set(kp[cell]) & set(tz_none) & set(kp_none))
        if not samples:
            continue
        record = {"method": cell[0], "ratio": cell[1], "n": len(samples),
                  "tokenzip": side(tz[cell], tz_none, samples), "kvpress": side(kp[cell], kp_none, samples),
                  "same": sum(tz[cell][s]["score"] == kp[cell][s]["score"] for s in samples)}
        if cell[0] == "none":
            record["same_predictions"] = sum(
                [p.strip() for p in tz[cell][s]["predictions"]] == [p.strip() for p in kp[cell][s]["predictions"]]
                for s in samples)
        records.append(record)
    return records


def table(records: list[dict[str, Any]]) -> str:
    head = ("| method | ratio | n | score tz | score kp | vs none tz | vs none kp | retention tz | retention kp "
            "| kept tz | kept kp | tz s | tz c | kp s | same |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        t, k = r["tokenzip"], r["kvpress"]
        same = f"{r['same']}/{r['n']}"
        if "same_predictions" in r:
            same += f" ({r['same_predictions']} same predictions)"
        lines.append(
            f"| {r['method']} | {r['ratio']:g} | {r['n']} | {pct(t['score'])} | {pct(k['score'])} "
            f"| {pct(t['vs_none'])} | {pct(k['vs_none'])} | {pct(t['retention'])} ({t['right']}) "
            f"| {pct(k['retention'])} ({k['right']}) | {t['kept']:.3f} | {k['kept']:.3f} | {t['seconds']:.1f} "
            f"| {t['compress']:.2f} | {k['seconds']:.1f} | {same} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenzip", help="tokenzip's rows.jsonl (tokenzip bench --stage kv)")
    parser.add_argument("kvpress", help="kvpress.jsonl (benchmarks/anchors/kvpress_run.sh)")
    parser.add_argument("--methods", nargs="+", help="only these methods (tokenzip names)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks")
    parser.add_argument("--by-task", action="store_true", help="one table per task as well")
    args = parser.parse_args()
    tokenzip_rows = [r for r in read_rows(args.tokenzip) if r.get("stage") == "kv" and r.get("engine") != "kvpress"]
    kvpress_rows = [r for r in read_rows(args.kvpress) if r.get("engine") == "kvpress"]
    records = compare(tokenzip_rows, kvpress_rows, args.methods, args.tasks)
    if not records:
        print("no method, ratio and sample in both files (with `none` in both)", file=sys.stderr)
        return 1
    print("## all tasks\n")
    print(table(records))
    if args.by_task:
        for task in sorted({r["task"] for r in kvpress_rows} & {r["task"] for r in tokenzip_rows}):
            if args.tasks and task not in args.tasks:
                continue
            records = compare(tokenzip_rows, kvpress_rows, args.methods, [task])
            if records:
                print(f"\n## {task}\n")
                print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
