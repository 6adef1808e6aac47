"""`tokenzip serve`: run the OpenAI-compatible server (uvicorn), a compressing proxy, or Ray Serve replicas."""

from __future__ import annotations

import argparse

from tokenzip import spec
from tokenzip.engines import ENGINES
from tokenzip.errors import TokenzipError, require
from tokenzip.serve import build_app
from tokenzip.serve.errors import APIError
from tokenzip.serve.ray_app import run_ray

DEFAULT_COMPRESSION = "kv:kvzip@0.5"
DEFAULT_PROXY_COMPRESSION = "prompt:extractive@0.5"


def _bytes(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--model", default="gemma-3-270m",
                        help="short name, local path or HF id (in proxy mode: the name reported and forwarded)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--compression", default=None,
                        help=f"default pipeline spec (default {DEFAULT_COMPRESSION!r}; with --upstream "
                             f"{DEFAULT_PROXY_COMPRESSION!r}); 'none' for no compression")
    parser.add_argument("--cache-bytes", type=_bytes, default=2 << 30,
                        help="context cache size in bytes (k/m/g suffixes; 0 disables it), default 2g")
    parser.add_argument("--max-queue", type=int, default=16, help="requests waiting or running before 429")
    parser.add_argument("--max-batch", type=int, default=8,
                        help="sequences decoded together in one forward pass (1: one request at a time), default 8")
    parser.add_argument("--min-context-tokens", type=int, default=512,
                        help="shortest context (tokens) the default compression and the context cache apply to; "
                             "shorter prompts are answered whole unless a request names its compression (default 512)")
    parser.add_argument("--max-body", type=_bytes, default=4 << 20,
                        help="largest request body in bytes (k/m/g suffixes), refused with 413 before it is read; "
                             "default 4m")
    parser.add_argument("--upstream", help="proxy mode: URL of an OpenAI-compatible server (e.g. http://host:8080/v1)")
    parser.add_argument("--scorer", default="gemma-3-270m", help="proxy mode: local model scoring the prompt stage")
    parser.add_argument("--engine", default="torch", choices=ENGINES,
                        help="the runtime: torch (transformers) or llamacpp (the model's GGUF in llama.cpp: kv methods "
                             "with one set of kept positions for every layer, the compressed context cached as "
                             "llama.cpp's saved state; one request at a time)")
    parser.add_argument("--n-ctx", type=int, metavar="CELLS",
                        help="--engine llamacpp: llama.cpp's context size (default: sized to each need)")
    parser.add_argument("--threads", type=int, help="--engine llamacpp: llama.cpp threads")
    parser.add_argument("--ray", action="store_true", help="deploy with Ray Serve (needs ray[serve])")
    parser.add_argument("--replicas", type=int, default=2, help="with --ray: number of replicas")


def run(args: argparse.Namespace) -> int:
    for module in ("fastapi", "uvicorn", "prometheus_client", "httpx"):
        require(module, "serve")
    compression = args.compression or (DEFAULT_PROXY_COMPRESSION if args.upstream else DEFAULT_COMPRESSION)
    spec.parse(compression)  # a bad spec fails here, before any model loads
    options = dict(model=args.model, compression=compression, cache_bytes=args.cache_bytes,
                   max_queue=args.max_queue, upstream=args.upstream, scorer=args.scorer, max_batch=args.max_batch,
                   min_context_tokens=args.min_context_tokens, max_body=args.max_body)
    if args.engine != "torch" or args.n_ctx is not None or args.threads is not None:
        if args.engine != "llamacpp":
            raise TokenzipError("--n-ctx and --threads size llama.cpp's context: add --engine llamacpp")
        if args.ray or args.upstream:
            raise TokenzipError("--engine llamacpp serves the model in this process: drop --ray and --upstream")
        options.update(engine=args.engine, n_ctx=args.n_ctx, threads=args.threads)
    if args.ray:
        return run_ray(options, args.host, args.port, args.replicas)
    import uvicorn

    try:
        app = build_app(**options)
    except APIError as exc:  # e.g. a stage the server does not run
        raise TokenzipError(f"--compression: {exc.message}") from None
    print(f"tokenzip serve: {args.model} on http://{args.host}:{args.port} (compression {compression!r})",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
