"""`tokenzip demo`: the README's main command.

A small real benchmark on the offline Gemma 3 270M: the uncompressed model and three KV-cache
methods (StreamingLLM, SnapKV, KVzip) at two ratios, on two locally generated tasks (one needle in a
haystack; facts planted in prose and asked about in other words), 1,024-token contexts, 5 samples
each. It prints the table and writes the report (markdown, HTML, plots) to ``results/demo``. Every
flag makes it bigger: more methods, ratios, tasks, samples, longer contexts, parallel workers.
Running it again resumes (finished rows are kept and skipped).

Then the stages composed: a few pipelines (``--pipelines``, each a spec as in :mod:`tokenzip.spec`)
answer one needle question about a ~2k-token haystack, and each prints where its savings came from
(tokens and KV bytes after each stage, against the uncompressed model on the same text).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

METHODS = ["streaming_llm", "snapkv", "kvzip"]
RATIOS = ["0.5", "0.75"]
TASKS = ["niah_single", "qa"]
PIPELINES = ["kv:kvzip@0.5", "prompt:extractive@0.5 | kv:kvzip@0.5",
             "prompt:extractive@0.5 | layers:fastv@0.3 | kv:kvzip@0.5"]


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--model", default="gemma-3-270m", help="short name, path or HF id")
    parser.add_argument("--stage", default="kv", choices=("kv", "prompt", "layers"))
    parser.add_argument("--methods", nargs="+", default=METHODS, metavar="METHOD")
    parser.add_argument("--ratios", nargs="+", default=RATIOS, metavar="R")
    parser.add_argument("--tasks", nargs="+", default=TASKS, metavar="TASK", help="see `tokenzip bench --list-tasks`")
    parser.add_argument("--context", nargs="+", default=["1024"], metavar="TOKENS")
    parser.add_argument("--samples", type=int, default=5, help="samples per task and context length")
    parser.add_argument("--out", default="results/demo", help="run directory (resumable)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: as tokenzip bench)")
    parser.add_argument("--pipelines", nargs="*", default=PIPELINES, metavar="SPEC",
                        help="pipelines shown composed after the sweep (none to skip: --pipelines)")


def needle_prompt(tokenizer, n_tokens: int, number: int = 482913, seed: int = 0) -> str:
    """A quick completion-style needle prompt of about ``n_tokens`` tokens (used by the model tests)."""
    rng = random.Random(seed)
    filler = [
        "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
    ]
    sentences: list[str] = []
    while len(tokenizer(" ".join(sentences)).input_ids) < n_tokens:
        sentences.extend(rng.choice(filler) for _ in range(20))
    sentences.insert(len(sentences) // 2, f"The special magic number is {number}.")
    return (" ".join(sentences) + "\nQuestion: What is the special magic number?\n"
            "Answer: The special magic number is")


def run(args: argparse.Namespace) -> int:
    from tokenzip.bench.cli import _floats, _ints
    from tokenzip.bench.report import write_report
    from tokenzip.bench.runner import run as bench

    start = time.perf_counter()
    command = " ".join(["tokenzip", "demo", *sys.argv[2:]]) if Path(sys.argv[0]).name == "tokenzip" else None
    print(f"tokenzip demo: {args.model}, {args.stage} stage, methods {', '.join(args.methods)} at ratios "
          f"{', '.join(args.ratios)}, tasks {', '.join(args.tasks)}, {args.samples} samples of "
          f"{', '.join(args.context)} tokens -> {args.out}", file=sys.stderr)
    bench(model=args.model, stage=args.stage, methods=args.methods, ratios=_floats(args.ratios), tasks=args.tasks,
          context=_ints(args.context), samples=args.samples, out=args.out, workers=args.workers, threads=args.threads,
          command=command)
    written = write_report(args.out)
    print(f"\nreport: {written['markdown']} and {written['html']} (plots in {Path(args.out) / 'plots'}); "
          f"demo took {time.perf_counter() - start:.0f} s")
    print("score: % of right answers (string match); vs none: % of the uncompressed model's score on the same "
          "samples; retention: score on the samples the uncompressed model got right.")
    if args.pipelines:
        show_pipelines(args.model, args.pipelines)
        print(f"\ndemo took {time.perf_counter() - start:.0f} s in all")
    return 0


def show_pipelines(model_name: str, specs: list[str], tokens: int = 2048, number: int = 739104) -> None:
    """Answer one needle question through each pipeline and print where its savings came from."""
    import tokenzip as tz

    pipes = [tz.pipeline(spec) for spec in specs]  # bad specs fail before the model loads
    model, tok = tz.load_model(model_name)
    context, question = needle_prompt(tok, tokens, number=number, seed=1).split("\nQuestion:")
    question = "\nQuestion:" + question
    print(f"\nThe stages composed: one needle question about a {len(tok(context).input_ids)}-token haystack "
          f"(right answer: {number}); KV bytes against the uncompressed cache of the same text")
    for pipe in pipes:
        pipe.prompt_scorer = (model, tok)
        result = pipe.answer(model, tok, context, question, max_new_tokens=8)
        answer = result.answers[0].text.strip()
        right = "right" if str(number) in answer else "wrong"
        print(f"\n{pipe}: {answer!r} ({right})")
        print(result.report.table())
