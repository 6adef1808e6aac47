"""`tokenzip tokenizers audit|train`: audit tokenizers, train tokenizers that need fewer tokens."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from tokenzip.errors import TokenzipError
from tokenzip.table import format_table
from tokenzip.textio import out_dir
from tokenzip.tokenizers import corpus as corpora
from tokenzip.tokenizers import parallel
from tokenzip.tokenizers.audit import audit
from tokenzip.tokenizers.load import load_tokenizer
from tokenzip.tokenizers.report import CORPUS_COLUMNS, write_audit_report
from tokenzip.tokenizers.train import check_arguments, evaluate, save, train_tokenizer

_EPILOG_AUDIT = """examples:
  tokenzip tokenizers audit gemma-3-270m minilm-l6 --out reports/tok
  tokenzip tokenizers audit out/tok/tokenizer.json --corpus my.txt --parallel en.txt de.txt ja.txt
  tokenzip tokenizers audit gemma-3-270m --languages de,ja,hi,ar --parallel catalogs"""

_EPILOG_TRAIN = """examples:
  tokenzip tokenizers train --algo superbpe --vocab 32000 --out out/super32k        # default corpus
  tokenzip tokenizers train --algo bpe --vocab 8000 --out out/bpe8k corpus/*.txt"""


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    sub = parser.add_subparsers(dest="tokenizers_command", metavar="{audit,train}")
    audit = sub.add_parser(
        "audit", help="bytes/token, fertility, round trip and per-language token premium of tokenizers",
        description="Audit tokenizers: bytes and characters per token, fertility, vocabulary use and exact round "
                    "trip on a corpus; token premium per language against English on parallel text; plots.",
        epilog=_EPILOG_AUDIT, formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("tokenizer", nargs="+",
                       help="a tokenizer.json, a directory holding one, gemma-3-270m, minilm-l6, or a HF id")
    audit.add_argument("--corpus", nargs="+", metavar="FILE",
                       help="text files to measure on (default: held-out part of the default corpus)")
    audit.add_argument("--parallel", nargs="+", metavar="SOURCE", default=["catalogs"],
                       help="'catalogs' (gettext catalogs on this machine, the default), 'none', or one file per "
                            "language aligned by line, named by language (en.txt, de.txt or eng_Latn.devtest, ...)")
    audit.add_argument("--languages", default="40", metavar="N|CODES",
                       help="catalogs: how many languages to align (chosen to keep the most common strings), or "
                            "comma-separated locale codes such as de,ja,pt_BR (default: 40)")
    audit.add_argument("--out", metavar="DIR", help="write audit.json, audit.md and plots here")
    audit.add_argument("--no-curves", action="store_true", help="skip bytes/token by vocabulary size (BPE only)")
    audit.add_argument("--json", action="store_true", help="print JSON instead of tables")

    train = sub.add_parser(
        "train", help="train a BPE, Unigram or SuperBPE tokenizer (standard tokenizer.json)",
        description="Train a tokenizer and write DIR/tokenizer.json (loads in stock tokenizers and transformers) "
                    "with a training report. Without FILES, trains on the default corpus (docstrings of the "
                    "installed Python packages).",
        epilog=_EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("files", nargs="*", metavar="FILES", help="UTF-8 text files (default: the default corpus)")
    train.add_argument("--algo", choices=["bpe", "unigram", "superbpe"], default="bpe")
    train.add_argument("--vocab", type=int, required=True, metavar="N", help="vocabulary size (tokens)")
    train.add_argument("--transition", type=int, metavar="T",
                       help="superbpe: vocabulary size at which superword merges start (default: N/2)")
    train.add_argument("--max-words", type=int, default=4, help="superbpe: most words in one token (default 4)")
    train.add_argument("--out", required=True, metavar="DIR", help="output directory")
    train.add_argument("--heldout", type=float, default=0.05,
                       help="fraction of each file's lines (its tail) held out for evaluation (default 0.05)")
    train.add_argument("--heldout-files", nargs="+", metavar="FILE", default=(),
                       help="evaluate on these files instead of a held-out tail")
    train.add_argument("--corpus-mb", type=float, default=16.0,
                       help="default corpus: size cap in MB (default 16)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(_tokenizers_parser=parser)


def _languages(value: str) -> tuple[int, list[str] | None]:
    if value.isdigit():
        if int(value) < 1:
            raise TokenzipError("--languages needs at least 1 language")
        return int(value), None
    codes = [c.strip() for c in value.split(",") if c.strip()]
    if not codes:
        raise TokenzipError(f"--languages: give a number or comma-separated codes, got {value!r}")
    return len(codes), codes


def _parallel(args: argparse.Namespace):
    sources = args.parallel
    if sources == ["none"]:
        return None
    if sources == ["catalogs"]:
        count, codes = _languages(args.languages)
        return parallel.from_catalogs(languages=codes, count=count)
    paths = []
    for s in sources:
        p = Path(s)
        paths += sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
    return parallel.from_files(paths)


def run_audit(args: argparse.Namespace) -> int:
    if args.out:  # where the report goes, checked before any work
        out_dir(args.out, "--out")
    tokenizers = [load_tokenizer(t) for t in args.tokenizer]  # a wrong name fails before any corpus is read
    if args.corpus:
        corpus = corpora.corpus_from_files(args.corpus, heldout=0.0)
        texts, description = corpus.train, corpus.description
    else:
        corpus = corpora.default_corpus()
        texts, description = corpus.heldout, "held-out part of the default corpus (" + corpus.description + ")"
    par = _parallel(args)
    result = audit(tokenizers, texts, par, curves=not args.no_curves)
    result.meta["corpus"] = description
    if args.json:
        print(json.dumps({"corpus": result.corpus_rows, "languages": result.language_rows, "curves": result.curves,
                          "meta": result.meta}, indent=2, default=str))
    else:
        print(f"corpus: {description}")
        print(format_table(result.corpus_rows, CORPUS_COLUMNS))
        for r in result.corpus_rows:
            if r.get("first round-trip failure"):
                print(f"  {r['tokenizer']}: not an exact round trip, e.g. {r['first round-trip failure']}")
        if result.language_rows:
            names = result.meta["tokenizers"]
            print(f"\ntoken premium vs {par.reference} on {len(par)} aligned strings ({par.source}):")
            print(format_table(result.premium_summary()))
            print()
            print(format_table(result.premium_table(), ["language", "byte premium", *names]))
        for name, rows in result.curves.items():
            print(f"\nbytes/token by vocabulary size (merge list cut), {name}:")
            print(format_table(rows))
    if args.out:
        written = write_audit_report(result, args.out)
        print(f"\nreport: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def run_train(args: argparse.Namespace) -> int:
    check_arguments(args.algo, args.vocab, args.transition)  # fail before reading any corpus
    if args.files:
        corpus = corpora.corpus_from_files(args.files, heldout=args.heldout, heldout_files=args.heldout_files)
    else:
        if args.corpus_mb <= 0:
            raise TokenzipError("--corpus-mb must be positive")
        corpus = corpora.default_corpus(max_bytes=int(args.corpus_mb * 1_000_000))
    trained = train_tokenizer(corpus.train, args.algo, args.vocab, args.transition, max_words=args.max_words,
                              progress=not args.no_progress)
    evaluation = evaluate(trained, corpus.heldout)
    command = "tokenzip tokenizers train " + " ".join(shlex.quote(a) for a in sys.argv[3:]) \
        if sys.argv[1:3] == ["tokenizers", "train"] else ""
    report = save(trained, args.out, corpus, evaluation, command)
    h = report.get("heldout") or {}
    print(format_table([{
        "algo": trained.algo, "vocab": trained.vocab_size, "transition": trained.transition,
        "train MB": round(corpus.train_bytes / 1e6, 2), "seconds": round(trained.seconds, 1),
        "peak RSS MB": round(trained.peak_rss_mb), "held-out bytes/token": h.get("bytes/token"),
        "round trip": h.get("round trip"),
    }]))
    print(f"\nwrote {Path(args.out) / 'tokenizer.json'} and training_report.{{json,md}}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.tokenizers_command == "audit":
        return run_audit(args)
    if args.tokenizers_command == "train":
        return run_train(args)
    args._tokenizers_parser.print_help()
    return 0
