"""`tokenzip generate`: answer a question about a context with a compressed KV cache."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import tokenzip as tz
from tokenzip import engines
from tokenzip.engines import ENGINES
from tokenzip.engines.answer import answer
from tokenzip.engines.llamacpp.engine import check_method
from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import check_max_new_tokens, one_chunk_size
from tokenzip.method import method_class
from tokenzip.params import from_text
from tokenzip.textio import read_text


def parse_params(items: list[str]) -> dict[str, str]:
    """``key=value`` pairs, the values as written (the method reads each by its parameter's type: one grammar with
    pipeline specs, :func:`tokenzip.params.from_text`)."""
    params: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise TokenzipError(f"--param expects key=value, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in params:
            raise TokenzipError(f"--param {key} given twice ({params[key]!r} and {value!r}): keep one")
        params[key] = value
    return params


def ratio_arg(text: str) -> float | str:
    """``--ratio``: a number, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number 0 <= r < 1 or auto, got {text!r}") from None


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--model", default="gemma-3-270m", help="short name, local path or HF id")
    parser.add_argument("--method", default="snapkv", help="kv method (`tokenzip methods --stage kv`), or none")
    parser.add_argument("--ratio", type=ratio_arg, default=None,
                        help="fraction of cache entries removed, 0 <= r < 1 (default 0.5), or auto: the method picks "
                             "it per layer within --param tolerance=T (methods with ratio='auto' only)")
    parser.add_argument("--budget", type=int, help="entries kept per head instead of a ratio (not with --ratio)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="extra method parameter")
    parser.add_argument("--context", required=True, help="text file with the context ('-' for stdin)")
    parser.add_argument("--question", required=True, action="append", help="question (repeat for several)")
    parser.add_argument("--answer-prefix", default="", help="text the answer starts with")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--query-aware", action="store_true", help="compress with the question appended")
    parser.add_argument("--chunk-size", type=int, metavar="TOKENS",
                        help="compress while prefilling, TOKENS at a time: each compressed layer holds at most its "
                             "budget + one chunk (for long contexts; chunkable methods only)")
    parser.add_argument("--engine", default="torch", choices=ENGINES,
                        help="the runtime: torch (transformers) or llamacpp (the model's GGUF in llama.cpp; one set of "
                             "kept positions for every layer)")
    parser.add_argument("--n-ctx", type=int, metavar="CELLS",
                        help="--engine llamacpp: llama.cpp's context size (default: sized to the need; a longer "
                             "context needs --chunk-size and --budget)")
    parser.add_argument("--threads", type=int, help="--engine llamacpp: llama.cpp threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object per answer")


def size_params(ratio: float | None, budget: int | None) -> dict[str, Any]:
    """``ratio`` or ``budget`` as method parameters (ratio 0.5 when neither is given); both is an error."""
    if ratio is not None and budget is not None:
        raise TokenzipError(f"give either --ratio {ratio} (the fraction of entries removed) or --budget {budget} "
                            "(the entries kept), not both")
    return {"budget": budget} if budget is not None else {"ratio": 0.5 if ratio is None else ratio}


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--n-ctx`` and ``--threads`` for the llama.cpp engine (refused with the torch engine)."""
    given = {k: v for k, v in (("n_ctx", args.n_ctx), ("threads", args.threads)) if v is not None}
    if given and args.engine != "llamacpp":
        raise TokenzipError(f"--{', --'.join(k.replace('_', '-') for k in given)} set(s) llama.cpp's context: add "
                            "--engine llamacpp")
    return given


def run(args: argparse.Namespace) -> int:
    options = engine_options(args)
    sizes = size_params(args.ratio, args.budget)
    context = read_text(args.context, "context file")
    method = None
    if args.method != "none":
        texts = parse_params(args.param)
        for name in ("ratio", "budget"):
            if name in texts:
                raise TokenzipError(f"give {name} with --{name}, not as --param")
        params = from_text(method_class(args.method, "kv"), texts, "--param")
        method = tz.get_method(args.method, stage="kv", **params, **sizes)
    check_max_new_tokens(args.max_new_tokens)  # what the model cannot do is refused before it is loaded
    one_chunk_size(args.chunk_size, [method] if method else [])
    if args.engine == "llamacpp":  # a method llama.cpp cannot run is refused before the model is loaded
        check_method(method, args.chunk_size)
    engine = engines.load_engine(args.engine, args.model, **options)
    engine.check_method(method, args.chunk_size)
    answers = answer(engine, context, args.question, method, query_aware=args.query_aware,
                     max_new_tokens=args.max_new_tokens, answer_prefix=args.answer_prefix, chunk_size=args.chunk_size)
    chosen = {str(k): v[0] for k, v in sorted(getattr(method, "chosen_ratios", {}).items())}
    for a in answers:
        if args.json:
            row = dict(vars(a), tokens_per_second=a.tokens_per_second)
            if chosen:
                row["chosen_ratios"] = chosen  # per compressed layer, with ratio=auto or a tolerance
            print(json.dumps(row))
        else:
            print(a.text.strip())
            cache = (f"{a.cache_bytes / 2**20:.2f} MiB (compressed while prefilling, chunks of {a.chunk_size})"
                     if a.chunk_size else f"{a.cache_bytes_before / 2**20:.2f} -> {a.cache_bytes / 2**20:.2f} MiB")
            print(f"[{a.engine}: {a.method}] context {a.tokens_in} tokens, achieved ratio {a.achieved_ratio:.3f}, "
                  f"cache {cache}, prefill {a.prefill_seconds:.2f} s, compress {a.compress_seconds:.2f} s, first token "
                  f"{a.first_token_seconds:.2f} s, decode {a.decode_seconds:.2f} s ({a.tokens_per_second:.1f} tok/s)",
                  file=sys.stderr)
            if chosen:
                print("[ratio chosen per layer] " + ", ".join(f"{k}: {v:.3f}" for k, v in chosen.items()),
                      file=sys.stderr)
    return 0
