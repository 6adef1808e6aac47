"""`tokenzip bench` (measure) and `tokenzip report DIR` (tables, plots, HTML)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tokenzip.bench import runner
from tokenzip.bench.report import summary_table, write_report
from tokenzip.bench.rows import load_rows
from tokenzip.bench.stages import with_chunk_size
from tokenzip.bench.tasks import list_tasks
from tokenzip.engines import ENGINES
from tokenzip.errors import TokenzipError
from tokenzip.table import format_table
from tokenzip.textio import STDOUT, out_dir


def _floats(values: list[str]) -> list[float]:
    out = []
    for value in values:
        for part in filter(None, value.split(",")):
            try:
                out.append(float(part))
            except ValueError as exc:
                raise TokenzipError(f"--ratios takes numbers (fractions of tokens removed), got {part!r}") from exc
    return out


def _ints(values: list[str]) -> list[int]:
    out = []
    for value in values:
        for part in filter(None, value.split(",")):
            try:
                out.append(int(part.lower().replace("k", "000")) if part.lower().endswith("k") else int(part))
            except ValueError as exc:
                raise TokenzipError(f"--context takes token counts such as 2048 or 4k, got {part!r}") from exc
    return out


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "report":
        parser.add_argument("dir", help="a directory written by `tokenzip bench --out DIR`")
        parser.add_argument("--out", help="where to write report.md, report.html and plots/ (default: DIR)")
        parser.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
        return
    parser.add_argument("--model", default="gemma-3-270m", help="short name, local path or HF id")
    parser.add_argument("--stage", choices=("kv", "prompt", "layers"), help="the stage of --methods (default: kv)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help="methods of the stage, with optional parameters: snapkv 'kivi:bits=2,evict=snapkv'; "
                             "'none' = uncompressed only (always measured; default: snapkv)")
    parser.add_argument("--ratios", nargs="+", metavar="R",
                        help="fractions of tokens removed (space or comma separated; default: 0.5)")
    parser.add_argument("--pipeline", nargs="+", metavar="SPEC",
                        help="pipeline specs instead of --stage/--methods/--ratios, single-stage and composed in one "
                             "run: 'kv:kvzip@0.5' 'prompt:extractive@0.5 | kv:kvzip@0.5' (rows carry each stage's "
                             "counts; the report adds where the savings came from and a frontier)")
    parser.add_argument("--tasks", nargs="+", default=["niah_single"], metavar="TASK",
                        help="tasks with optional parameters: vt 'niah_single:haystack=prose' (see --list-tasks)")
    parser.add_argument("--context", nargs="+", default=["2048"], metavar="TOKENS",
                        help="context lengths in tokens of the model's tokenizer (2048, 4k, ...)")
    parser.add_argument("--samples", type=int, default=20, help="samples per task and context length")
    parser.add_argument("--out", default="results/run1", help="run directory (rows.jsonl; resumable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks-file", help="JSONL rows (context, question, answer), all used, instead of --tasks, "
                                             "--context and --samples")
    parser.add_argument("--export-tasks", metavar="FILE",
                        help="write the exact prompts and answers to FILE ('-': standard output) and stop")
    parser.add_argument("--workers", type=int, default=1, help="parallel workers (processes, or Ray actors)")
    parser.add_argument("--backend", default="local", choices=("local", "ray"))
    parser.add_argument("--ray-address", help="Ray cluster address (default: a running or new local instance)")
    parser.add_argument("--threads", type=int,
                        help="torch (and llama.cpp) threads per worker (default: CPUs / workers; 1 on a machine busier "
                             "than its CPUs)")
    parser.add_argument("--max-new-tokens", type=int, help="override each task's answer length")
    parser.add_argument("--prompt-style", default="auto", choices=("auto", "completion", "chat"),
                        help="auto: the chat template when the tokenizer has one, else completion-style")
    parser.add_argument("--query-aware", action="store_true", help="kv: compress with the question appended")
    parser.add_argument("--chunk-size", type=int, metavar="TOKENS",
                        help="kv: methods compress while prefilling, TOKENS at a time (each compressed layer holds at "
                             "most its budget + one chunk); the uncompressed row stays a dense prefill. Same as "
                             "chunk_size=TOKENS in each method spec; budgets go in the spec (snapkv:budget=2048) "
                             "with --ratios 0")
    parser.add_argument("--no-shared-prefill", action="store_true",
                        help="kv: prefill once per method instead of once per sample (same results, per-method "
                             "prefill times)")
    parser.add_argument("--engine", default="torch", choices=ENGINES,
                        help="kv: the runtime (torch: transformers; llamacpp: the model's GGUF in llama.cpp, one set "
                             "of kept positions for all layers; rows are labelled llamacpp:METHOD)")
    parser.add_argument("--n-ctx", type=int, metavar="CELLS",
                        help="--engine llamacpp: llama.cpp's context size (default: sized to each context)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each worker")
    parser.add_argument("--report", action="store_true", help="also write the report (report.md/html, plots)")
    parser.add_argument("--list-tasks", action="store_true", help="list the tasks and their parameters, then stop")


def run(args: argparse.Namespace) -> int:
    if args.command == "report":
        return _report(args)
    if args.list_tasks:
        print(format_table(list_tasks()))
        return 0
    contexts = _ints(args.context)
    if args.export_tasks:
        n = runner.export_tasks(args.export_tasks, model=args.model, tasks=args.tasks, context=contexts,
                                samples=args.samples, seed=args.seed, prompt_style=args.prompt_style,
                                tasks_file=args.tasks_file)
        where = "standard output" if args.export_tasks == STDOUT else args.export_tasks
        print(f"wrote {n} prompts to {where}", file=sys.stderr if args.export_tasks == STDOUT else sys.stdout)
        return 0
    if args.pipeline and (args.stage or args.methods or args.ratios or args.chunk_size is not None):
        raise TokenzipError("--pipeline replaces --stage, --methods, --ratios and --chunk-size: a single stage is a "
                            "pipeline of one ('kv:snapkv@0.5'; chunk_size=N goes in the kv item)")
    stage = "pipeline" if args.pipeline else args.stage or "kv"
    methods = args.pipeline or with_chunk_size(args.methods or ["snapkv"], args.chunk_size)
    ratios = [0.0] if args.pipeline else _floats(args.ratios or ["0.5"])
    runner.run(runner.BenchConfig(
        model=args.model, stage=stage, methods=methods, ratios=ratios, tasks=args.tasks, contexts=contexts,
        samples=args.samples, out=args.out, seed=args.seed, tasks_file=args.tasks_file, workers=args.workers,
        backend=args.backend, ray_address=args.ray_address, max_new_tokens=args.max_new_tokens,
        prompt_style=args.prompt_style, query_aware=args.query_aware, shared_prefill=not args.no_shared_prefill,
        dtype=args.dtype, device=args.device, threads=args.threads, warmup=not args.no_warmup, engine=args.engine,
        n_ctx=args.n_ctx,
        command=_command_line()))
    if args.report:
        _write(Path(args.out), None, plots=True)
    return 0


def _command_line() -> str | None:
    """The command as typed, when run as the ``tokenzip`` script (recorded in the run's config.json)."""
    return shlex.join(["tokenzip", *sys.argv[1:]]) if Path(sys.argv[0]).name == "tokenzip" else None


def _write(directory: Path, out: str | None, plots: bool) -> None:
    written = write_report(directory, out, with_plots=plots)
    print(f"report: {written['markdown']} and {written['html']}" +
          (f" (+ {len(written) - 2} plots)" if len(written) > 2 else ""), file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    rows = load_rows(args.dir)
    if args.out:  # where the report goes, checked before anything is rendered
        out_dir(args.out, "--out")
    print(summary_table(rows))
    _write(Path(args.dir), args.out, plots=not args.no_plots)
    return 0
