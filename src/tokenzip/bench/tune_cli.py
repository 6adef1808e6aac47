"""``tokenzip tune``: search how to split a total effective KV compression across stages (see :mod:`.tune`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokenzip.bench.cli import _command_line, _floats, _ints
from tokenzip.bench.report import write_report
from tokenzip.bench.rows import load_rows
from tokenzip.bench.savings import savings_table
from tokenzip.bench.tune import TuneConfig, tune
from tokenzip.errors import TokenzipError
from tokenzip.table import format_table


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--target", nargs="+", type=float, required=True, metavar="T",
                        help="fractions of the dense KV cache's bytes removed (0.5 = 2x, 0.75 = 4x, 0.875 = 8x)")
    parser.add_argument("--tasks", nargs="+", default=["niah_multikey"], metavar="TASK")
    parser.add_argument("--context", nargs="+", default=["2048"], metavar="TOKENS")
    parser.add_argument("--stages", default="prompt,layers,kv", help="the stages to split the compression across")
    parser.add_argument("--methods", nargs="+", metavar="STAGE:METHOD",
                        help="methods without ratios, e.g. prompt:extractive kv:kvzip 'kv:kvzip:compress_sliding=true' "
                             "(default: prompt:extractive layers:fastv kv:kvzip)")
    parser.add_argument("--grid", nargs="+", metavar="STAGE=R,R",
                        help="each stage's ratios, e.g. prompt=0.5,0.75,0.875 (defaults: prompt 0.5-0.9375, layers "
                             "0.25,0.5, kv 0.5,0.75,0.875)")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--samples", type=int, default=16, help="samples per task and length on the report seed")
    parser.add_argument("--tune-samples", type=int, help="samples per cell at the last rung (default: --samples)")
    parser.add_argument("--first", type=int, default=1, help="samples per cell at the probe rung")
    parser.add_argument("--eta", type=int, default=3, help="each rung keeps 1/eta and multiplies the samples by eta")
    parser.add_argument("--tolerance", type=float, default=0.01, help="a target counts as reached this close to it")
    parser.add_argument("--seed", type=int, default=0, help="the tuning seed")
    parser.add_argument("--report-seed", type=int, default=1, help="the seed whose samples the picks are reported on")
    parser.add_argument("--out", default="results/tune", help="OUT/tune and OUT/report (resumable), OUT/tune.json")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", default="local", choices=("local", "ray"))
    parser.add_argument("--ray-address")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--prompt-style", default="auto", choices=("auto", "completion", "chat"))
    parser.add_argument("--query-aware", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--device")


def _methods(items: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items or []:
        stage = item.split(":", 1)[0]
        if ":" not in item:
            raise TokenzipError(f"--methods {item!r}: write stage:method, e.g. kv:kvzip")
        out.setdefault(stage, []).append(item)
    return out


def _grid(items: list[str] | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for item in items or []:
        stage, _, ratios = item.partition("=")
        stage = stage.strip()
        if not ratios:
            raise TokenzipError(f"--grid {item!r}: write stage=r1,r2, e.g. kv=0.5,0.75")
        if stage in out:
            raise TokenzipError(f"--grid gives {stage} twice ({stage}={','.join(map(repr, out[stage]))} and {item}): "
                                f"write its ratios once, e.g. {stage}=0.5,0.75")
        out[stage] = _floats([ratios])
    return out


def run(args: argparse.Namespace) -> int:
    runner = {"workers": args.workers, "backend": args.backend, "ray_address": args.ray_address,
              "threads": args.threads, "max_new_tokens": args.max_new_tokens, "prompt_style": args.prompt_style,
              "query_aware": args.query_aware, "dtype": args.dtype, "command": _command_line()}
    if args.device:
        runner["device"] = args.device
    config = TuneConfig(targets=args.target, tasks=args.tasks, contexts=_ints(args.context), model=args.model,
                        stages=[s.strip() for s in args.stages.split(",") if s.strip()], methods=_methods(args.methods),
                        grid=_grid(args.grid), samples=args.samples, tune_samples=args.tune_samples, first=args.first,
                        eta=args.eta, tolerance=args.tolerance, seed=args.seed, report_seed=args.report_seed,
                        out=args.out, run=runner)
    result = tune(config)
    print(render(result))
    write_report(Path(args.out) / "report")
    print(f"rows and report: {Path(args.out) / 'report'}; search: {Path(args.out) / 'tune.json'}", file=sys.stderr)
    return 0


def render(result: dict[str, Any]) -> str:
    """The picks per target, then the frontier of what was reported."""
    config = result["config"]
    none = result["uncompressed"]["score"]
    lines = [f"tuned on seed {config['seed']} ({config['tune_samples']} samples per cell at most), reported on seed "
             f"{config['report_seed']} ({config['samples']} per cell); uncompressed: {none:.1f}", ""]
    for target in config["targets"]:
        races = [r for r in result["races"] if r["target"] == target]
        x = 1 / (1 - target)
        reached = all(r["reached"] for r in races if r["bracket"] == "any")
        state = "reached" if reached else "MISSED: no configuration of the grid gets there; the closest are shown"
        lines.append(f"target {x:g}x ({target:g} of the dense KV bytes removed): {state}")
        table = []
        for r in races:
            rep = r["report"]
            if rep is None:
                table.append({"best": r["bracket"], "pipeline": r["spec"],
                              "report score": "refused on the report seed"})
                continue
            shares = ", ".join(f"{s} {100 * v:.0f}%" for s, v in rep["shares"].items())
            table.append({"best": r["bracket"] + ("" if r["reached"] else " (missed)"), "pipeline": r["spec"],
                          "tune score": f"{r['tune']['score']:.1f} (n={r['tune']['n']})",
                          "report score": f"{rep['score']:.1f} (n={rep['n']})",
                          "% of none": f"{100 * rep['score'] / none:.0f}" if none else "",
                          "KV x": f"{rep['compression']:.2f}", "bytes": shares})
        lines += [format_table(table), ""]
        best = next((r for r in races if r["bracket"] == "any"), None)
        if best:
            lines += [f"best at {x:g}x: {best['spec']}", ""]
    lines += ["frontier of the reported configurations (seed "
              f"{config['report_seed']}):", savings_table(load_rows(Path(config["out"]) / "report"), markdown=False)]
    return "\n".join(lines)
