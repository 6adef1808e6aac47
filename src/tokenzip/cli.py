"""The `tokenzip` command line.

Each subcommand lives in a module exposing ``configure(parser, command)`` and ``run(args) -> int``; modules
are imported only when their command runs, so ``tokenzip --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

from tokenzip.errors import MissingDependencyError, TokenzipError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tokenzip.demo", "the main job: KV compression on the offline SmolLM2-135M, a small benchmark, report"),
    "models": ("tokenzip.cli_info", "list the models that load offline, and whether they are installed"),
    "methods": ("tokenzip.cli_info", "list every method with its stage, paper and parameters"),
}


def register_command(name: str, module: str, help: str) -> None:
    """Add a subcommand served by ``module`` (which defines configure/run)."""
    COMMANDS[name] = (module, help)


def _extra_commands() -> None:
    for name, module, help in (
        ("generate", "tokenzip.kv.cli", "generate from a context with a compressed KV cache"),
        ("bench", "tokenzip.bench.cli", "measure quality, speed and memory of methods on tasks"),
        ("report", "tokenzip.bench.cli", "render tables, plots and an HTML page from bench results"),
        ("tune", "tokenzip.bench.tune_cli", "search how to split a total KV compression across prompt, layers and kv"),
        ("prompt", "tokenzip.prompt.cli", "compress a text file (or stdin) before any model"),
        ("tokenizers", "tokenzip.tokenizers.cli", "audit tokenizers, train tokenizers that need fewer tokens"),
        ("serve", "tokenzip.serve.cli", "an OpenAI-compatible server: compression per request, a compressed context "
                                        "cache, a compressing proxy"),
    ):
        if importlib.util.find_spec(module) is not None:
            register_command(name, module, help)


def build_parser() -> argparse.ArgumentParser:
    _extra_commands()
    parser = argparse.ArgumentParser(
        prog="tokenzip",
        description="Cut the tokens a transformer processes, and measure what that saves and costs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(_module=module)
        importlib.import_module(module).configure(p, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.command:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (TokenzipError, MissingDependencyError, FileNotFoundError) as exc:
        print(f"tokenzip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the checks did not foresee (a full disk, a file vanishing): a message, no traceback
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        print(f"tokenzip {args.command}: error: {exc.strerror or exc}{': ' + paths if paths else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
