"""`tokenzip prompt FILE|- --ratio 0.5`: compressed text on stdout, token counts on stderr."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from tokenzip.method import method_class
from tokenzip.prompt import compress
from tokenzip.textio import read_text


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("file", help="text file to compress, or - for standard input")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--ratio", type=float, default=None,
                      help="fraction of tokens to remove, 0 <= ratio < 1 (default 0.5)")
    size.add_argument("--budget", type=int, default=None, help="number of tokens to keep instead of a ratio")
    parser.add_argument("--question", default=None, help="the question the text must answer (question-aware methods)")
    parser.add_argument("--method", default="llmlingua",
                        help="prompt method (default llmlingua); `tokenzip methods --stage prompt` lists them")
    parser.add_argument("--mode", default="text", choices=("text", "json", "markdown", "code"),
                        help="structure to keep: json (valid JSON, keys intact), markdown (headings, code fences), "
                             "code (Python that still parses)")
    parser.add_argument("--scorer", default="gemma-3-270m", help="causal LM that scores tokens (name or local path)")
    parser.add_argument("--target-tokenizer", default=None,
                        help="tokenizer the budget is counted on (model name or tokenizer path; default: the scorer's)")
    parser.add_argument("--keep", action="append", default=None, metavar="REGEX",
                        help="never remove matches of this regular expression (repeatable)")
    parser.add_argument("--no-protect", action="store_true", help="allow numbers, URLs and e-mail addresses to go")
    parser.add_argument("--keep-order", action="store_true",
                        help="question-aware methods: do not move the most relevant sentence or document to the end")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the text, counts and spans")


def run(args: argparse.Namespace) -> int:
    text = read_text(args.file, "input file")
    params = {"reorder": "none"} if args.keep_order and _reorders(args.method) else {}
    result = compress(
        text, ratio=args.ratio, budget=args.budget, question=args.question, method=args.method,
        scorer=args.scorer, target_tokenizer=args.target_tokenizer, keep=args.keep, mode=args.mode,
        protect=False if args.no_protect else None, **params,
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.text)
        if result.text and not result.text.endswith("\n") and sys.stdout.isatty():
            sys.stdout.write("\n")
        print(f"tokenzip prompt: {result.method}: {result.tokens_before} -> {result.tokens_after} tokens "
              f"(ratio {result.ratio:.3f}, budget {result.budget}) in {result.seconds:.2f} s", file=sys.stderr)
        for note in result.notes:
            print(f"tokenzip prompt: note: {note}", file=sys.stderr)
    return 0


def _reorders(method: str) -> bool:
    """Whether ``method`` has a ``reorder`` parameter (the others always keep the original order)."""
    return "reorder" in {f.name for f in dataclasses.fields(method_class(method, stage="prompt"))}
