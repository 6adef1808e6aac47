"""`tokenzip models` and `tokenzip methods`."""

from __future__ import annotations

import argparse
import json

from tokenzip.method import STAGES, methods
from tokenzip.table import format_table


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "methods":
        parser.add_argument("--stage", choices=STAGES, help="only this stage")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.command == "models":
        from tokenzip.models import list_models  # lazy: keeps tokenzip.cli_info free of torch

        rows = list_models()
        columns = ["name", "architecture", "params", "installed", "install", "purpose"]
    else:
        rows = methods(args.stage)
        for r in rows:
            r["params"] = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        columns = ["stage", "name", "paper", "params"]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(format_table(rows, columns))
        if args.command == "models":
            print("\nAny other name is passed to transformers as a Hugging Face id or a local path.")
    return 0
