"""Answer llmlingua's compressed contexts with tokenzip's bench protocol and write them as bench rows.

``llmlingua_run.sh`` compresses the contexts of a ``tokenzip bench --export-tasks`` file in the
llmlingua environment; this script (project venv) gives each compressed context, unchanged, to
``tokenzip bench --stage prompt --methods none --tasks-file ...`` so the target model answers it
exactly as it answers tokenzip's compressed contexts, then writes the rows to RUN_DIR/llmlingua.jsonl
with ``engine: "llmlingua"``, the method and ratio asked, the original and kept token counts (the
bench's tokenizer) and llmlingua's own compression time. The uncompressed rows are measured the same
way, so `tokenzip report RUN_DIR` reads llmlingua's scores against its own ``none`` rows.

    python benchmarks/anchors/llmlingua_rows.py TASKS.jsonl COMPRESSED.jsonl RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def bench(tasks: list[dict], out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    subprocess.run([sys.executable, "-m", "tokenzip.cli", "bench", "--stage", "prompt", "--model", "gemma-3-270m",
                    "--methods", "none", "--tasks-file", str(path), "--out", str(out / "run"), "--threads", "1"],
                   check=True)
    return [json.loads(x) for x in (out / "run" / "rows.jsonl").read_text().splitlines() if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks")
    parser.add_argument("compressed")
    parser.add_argument("run_dir")
    args = parser.parse_args()
    tasks = [json.loads(x) for x in Path(args.tasks).read_text().splitlines() if x.strip()]
    by_id = {t["id"]: t for t in tasks}
    compressed = [json.loads(x) for x in Path(args.compressed).read_text().splitlines() if x.strip()]
    groups: dict[tuple[str, float], list[dict]] = {}
    for c in compressed:
        groups.setdefault((c["method"], c["ratio"]), []).append(c)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in bench(tasks, Path(tmp) / "none"):
            row.update(engine="llmlingua", key=f"{tasks[row['metadata']['line'] - 1]['id']}|none|0")
            rows.append(row)
        for method, ratio in sorted(groups):
            ordered = groups[(method, ratio)]
            shorter = [dict(by_id[c["id"]], context=c["text"]) for c in ordered]
            answered = {r["metadata"]["line"]: r for r in bench(shorter, Path(tmp) / f"{method}-{ratio}")}
            for line, c in enumerate(ordered, start=1):
                row = answered[line]
                original = by_id[c["id"]]["context_tokens"]
                kept = row["tokens_in"]
                row.update(engine="llmlingua", method=method, ratio=ratio, key=f"{c['id']}|{method}|{ratio:g}",
                           tokens_in=original, tokens_kept=kept, achieved_ratio=1 - kept / original,
                           compress_seconds=c["seconds"], notes=["compressed by llmlingua 0.2.2 (llmlingua_run.py)"])
                rows.append(row)
    out = Path(args.run_dir) / "llmlingua.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
