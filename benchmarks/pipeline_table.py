"""The tables of benchmarks/pipeline-gemma-3-270m.md, from `tokenzip tune` output directories.

    python benchmarks/pipeline_table.py results/pipeline-2048 results/pipeline-4096

For each target and context length: the best configuration, the best single stage and the best composed
pipeline that `tokenzip tune` picked on the tuning seed, with their scores on the report seed per task (and
% of the uncompressed model's score on the same samples), the effective KV compression they reached (the
worst cell) and each stage's share of the dense cache's bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tokenzip.bench.rows import load_rows
from tokenzip.bench.tune import figures


def cell(rows: list[dict], spec: str, task: str) -> tuple[float, int]:
    mine = [r["score"] for r in rows if r["method"] == spec and r["task"] == task]
    return 100.0 * sum(mine) / len(mine), len(mine)


def main(directories: list[str]) -> None:
    results = {d: json.loads((Path(d) / "tune.json").read_text()) for d in directories}
    tasks = results[directories[0]]["config"]["tasks"]
    print("| target | context | best | pipeline | tuned (seed 0) | " + " | ".join(f"{t} (seed 1)" for t in tasks) +
          " | all | % of none | KV x | bytes removed by stage |")
    print("|---" * (9 + len(tasks)) + "|")
    rows = {d: load_rows(Path(d) / "report") for d in directories}
    targets = sorted({r["target"] for res in results.values() for r in res["races"]})
    for d in directories:
        none = figures(rows[d])["none"]
        length = results[d]["config"]["contexts"][0]
        cells = [f"{cell(rows[d], 'none', t)[0]:.1f}" for t in tasks]
        print(f"| - | {length} | uncompressed | `none` | | {' | '.join(cells)} | {none.score:.1f} | 100 | 1.00 | |")
    for target in targets:
        for d in directories:
            length = results[d]["config"]["contexts"][0]
            found = figures(rows[d])
            none = found["none"].score
            for race in (r for r in results[d]["races"] if r["target"] == target):
                spec, f = race["spec"], found[race["spec"]]
                cells = [f"{cell(rows[d], spec, t)[0]:.1f}" for t in tasks]
                shares = ", ".join(f"{s} {100 * v:.0f}%" for s, v in f.shares.items() if s != "held")
                missed = "" if race["reached"] else " (missed)"
                kept = f"{100 * f.score / none:.0f}" if none else "-"
                print(f"| {1 / (1 - target):g}x | {length} | {race['bracket']}{missed} | "
                      f"`{spec.replace('|', chr(92) + '|')}` | {race['tune']['score']:.1f} (n={race['tune']['n']}) | "
                      f"{' | '.join(cells)} | {f.score:.1f} | {kept} | {f.compression:.2f} | "
                      f"{shares} |")


if __name__ == "__main__":
    main(sys.argv[1:])
