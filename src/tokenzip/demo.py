"""`tokenzip demo`: the README's main command (a few minutes on 2 CPU cores).

On the offline SmolLM2-135M-Instruct, a full-attention decoder (every layer's cache is compressible, so a
ratio is the whole cache's):

1. **KV compression with the answers**: one needle question about a ~1,500-token document, answered from
   the uncompressed cache and from caches compressed 2x and 4x (``compactor``, query-agnostic: the document
   is compressed before the question is known), with the bytes each cache really holds.
2. **A small benchmark**: the uncompressed model and three KV methods at ratios 0.5 and 0.75 on two locally
   generated tasks (one needle in a haystack; a needle among distractor keys), 1,024-token contexts, 3
   samples each. It prints the table and writes the report (markdown, HTML, plots)
   to ``results/demo``. Running it again resumes (finished rows are kept and skipped).
3. **The stages composed**: pipelines (``--pipelines``, each a spec as in :mod:`tokenzip.spec`) answer the
   same question, each printing where its savings came from.

``--full`` runs the bigger sweep of earlier releases (four methods, three tasks, 5 samples, three
pipelines); every other flag also makes it bigger or different (``--model gemma-3-270m`` for Gemma 3).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import tokenzip as tz

MODEL = "smollm2-135m"
METHODS = ["streaming_llm", "snapkv", "compactor"]
RATIOS = ["0.5", "0.75"]
TASKS = ["niah_single", "niah_multikey"]
PIPELINES = ["kv:compactor@0.75", "prompt:extractive@0.5 | kv:compactor@0.5"]
FULL = {"methods": ["streaming_llm", "snapkv", "compactor", "kvzip"], "tasks": ["niah_single", "niah_multikey", "qa"],
        "samples": 5, "pipelines": ["kv:kvzip@0.5", "prompt:extractive@0.5 | kv:kvzip@0.5",
                                    "prompt:extractive@0.5 | layers:fastv@0.3 | kv:kvzip@0.5"]}
SHOWN = ("compactor", [0.5, 0.75])  # part 1: the method and ratios answered with the whole cache compressed


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--model", default=MODEL, help="short name, path or HF id")
    parser.add_argument("--full", action="store_true",
                        help="the bigger sweep: 4 methods, 3 tasks, 5 samples, 3 pipelines (about 4x longer)")
    parser.add_argument("--stage", default="kv", choices=("kv", "prompt", "layers"))
    parser.add_argument("--methods", nargs="+", metavar="METHOD", help=f"default: {' '.join(METHODS)}")
    parser.add_argument("--ratios", nargs="+", default=RATIOS, metavar="R")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="see `tokenzip bench --list-tasks`")
    parser.add_argument("--context", nargs="+", default=["1024"], metavar="TOKENS")
    parser.add_argument("--samples", type=int, help="samples per task and context length (default 3, --full 5)")
    parser.add_argument("--out", default="results/demo", help="run directory (resumable)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: as tokenzip bench)")
    parser.add_argument("--pipelines", nargs="*", metavar="SPEC",
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
    from tokenzip.bench.cli import _floats, _ints  # lazy: keeps tokenzip.demo free of torch
    from tokenzip.bench.report import write_report  # lazy: keeps tokenzip.demo free of torch
    from tokenzip.bench.runner import run as bench  # lazy: keeps tokenzip.demo free of torch

    start = time.perf_counter()
    methods = args.methods or (FULL["methods"] if args.full else METHODS)
    tasks = args.tasks or (FULL["tasks"] if args.full else TASKS)
    samples = args.samples or (FULL["samples"] if args.full else 3)
    pipelines = args.pipelines if args.pipelines is not None else (FULL["pipelines"] if args.full else PIPELINES)
    command = " ".join(["tokenzip", "demo", *sys.argv[2:]]) if Path(sys.argv[0]).name == "tokenzip" else None
    if args.stage == "kv":
        show_kv(args.model)
    print(f"\ntokenzip demo: {args.model}, {args.stage} stage, methods {', '.join(methods)} at ratios "
          f"{', '.join(args.ratios)}, tasks {', '.join(tasks)}, {samples} samples of "
          f"{', '.join(args.context)} tokens -> {args.out}", file=sys.stderr)
    bench(model=args.model, stage=args.stage, methods=methods, ratios=_floats(args.ratios), tasks=tasks,
          context=_ints(args.context), samples=samples, out=args.out, workers=args.workers, threads=args.threads,
          command=command)
    written = write_report(args.out)
    print(f"\nreport: {written['markdown']} and {written['html']} (plots in {Path(args.out) / 'plots'})")
    print("score: % of right answers (string match); vs none: % of the uncompressed model's score on the same "
          "samples; retention: score on the samples the uncompressed model got right.")
    if pipelines:
        show_pipelines(args.model, pipelines)
    print(f"\ndemo took {time.perf_counter() - start:.0f} s in all; the report is {written['html']}")
    return 0


def _needle(tok, tokens: int, number: int) -> tuple[str, str]:
    context, question = needle_prompt(tok, tokens, number=number, seed=1).split("\nQuestion:")
    return context, "\nQuestion:" + question


def show_kv(model_name: str, tokens: int = 1500, number: int = 739104) -> None:
    """Answer one needle question from the uncompressed cache and from caches compressed at each ratio of
    :data:`SHOWN`, printing the bytes each really holds."""
    from tokenzip.models.cache_layers import dense_cache_bytes  # lazy: keeps tokenzip.demo free of torch

    name, ratios = SHOWN
    model, tok = tz.load_model(model_name)
    context, question = _needle(tok, tokens, number)
    methods = [tz.get_method(name, ratio=r) for r in ratios]
    prefill = tz.kv.prefill(model, tok, context, methods)
    dense = dense_cache_bytes(model, prefill.n_tokens)
    print(f"KV cache compression on {model_name}: one needle question about a {prefill.n_tokens}-token document "
          f"(right answer: {number}); the document is compressed before the question is seen")
    for method in [None, *methods]:
        compressed = prefill.compress(method)
        text, _, seconds = tz.kv.answer_from(model, tok, compressed, question, max_new_tokens=8)
        right = "right" if str(number) in text else "wrong"
        label = "uncompressed" if method is None else f"{name} at ratio {method.ratio}"
        print(f"  {label:<26} {text.strip()!r:<22} ({right})  KV held {compressed.bytes / 2**20:6.2f} MiB of "
              f"{dense / 2**20:.2f} MiB ({dense / compressed.bytes:.1f}x fewer bytes), answer in {seconds:.1f} s")


def show_pipelines(model_name: str, specs: list[str], tokens: int = 1500, number: int = 739104) -> None:
    """Answer one needle question through each pipeline and print where its savings came from."""
    pipes = [tz.pipeline(spec) for spec in specs]  # bad specs fail before the model loads
    model, tok = tz.load_model(model_name)
    context, question = _needle(tok, tokens, number)
    print(f"\nThe stages composed: the same question about the {len(tok(context).input_ids)}-token document "
          f"(right answer: {number}); KV bytes against the uncompressed cache of the same text")
    for pipe in pipes:
        pipe.prompt_scorer = (model, tok)
        result = pipe.answer(model, tok, context, question, max_new_tokens=8)
        answer = result.answers[0].text.strip()
        right = "right" if str(number) in answer else "wrong"
        print(f"\n{pipe}: {answer!r} ({right})")
        print(result.report.table())
