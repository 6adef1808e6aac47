"""Questions about a context answered through any engine (:class:`tokenzip.engines.base.Engine`): the
``tz.kv.answer`` protocol (prefill and compress once, query-agnostic, each question after the original context)
written once over the engine protocol, with the time to the first token of every answer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tokenzip.engines.base import Compressed, Engine
from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import KVAnswer, check_context, check_max_new_tokens, one_chunk_size
from tokenzip.kv.base import KVMethod
from tokenzip.method import get_method


@dataclass
class EngineAnswer(KVAnswer):
    """A :class:`tokenzip.kv.KVAnswer` with the engine that gave it and its time to the first token (feeding the
    question included; for the first question, after the prefill and compression)."""

    engine: str = "torch"
    first_token_seconds: float = 0.0


@dataclass
class Generated:
    """One answer from a compressed context: ``seconds`` covers the question and generation."""

    text: str
    new_tokens: int
    first_token_seconds: float
    seconds: float


def answer_from(engine: Engine, compressed: Compressed, question: str | Sequence[int], max_new_tokens: int = 32,
                answer_prefix: str = "") -> Generated:
    """Greedy answer to ``question`` (text, then ``answer_prefix``; or token ids) from ``compressed``."""
    check_max_new_tokens(max_new_tokens)
    ids = engine.tokenize(question + answer_prefix, False) if isinstance(question, str) else list(question)
    start = time.perf_counter()
    first = 0.0
    tokens = []
    for token in engine.generate(compressed, ids, max_new_tokens):
        if not tokens:
            first = time.perf_counter() - start
        tokens.append(token)
    seconds = time.perf_counter() - start
    return Generated(engine.detokenize(tokens), len(tokens), first or seconds, seconds)


def answer(engine: Engine, context: str, questions: str | Sequence[str], method: KVMethod | str | None = None,
           max_new_tokens: int = 32, answer_prefix: str = "", chunk_size: int | None = None,
           query_aware: bool = False) -> list[EngineAnswer]:
    """Prefill and compress ``context`` once with ``engine``, then answer each question from it (as
    :func:`tokenzip.kv.answer`; ``query_aware``: each question appended to the context before compression)."""
    method = get_method(method, stage="kv") if isinstance(method, str) else method
    questions = [questions] if isinstance(questions, str) else list(questions)
    if not questions:
        raise TokenzipError("give at least one question")
    check_context(context)  # as tz.kv.answer: every engine refuses the same inputs before any work
    check_max_new_tokens(max_new_tokens)
    methods = [method] if method is not None else []
    chunk_size = one_chunk_size(chunk_size, methods)
    engine.check_method(method, chunk_size)
    results = []
    shared = compressed = None
    if not query_aware:
        shared = engine.prefill(context, methods, chunk_size=chunk_size)
        compressed = engine.compress(shared, method)
    for question in questions:
        if query_aware:  # the question is compressed with the context; decoding starts from its last token
            ids = engine.tokenize(context, True) + engine.tokenize(question + answer_prefix, False)
            pre = engine.prefill(ids[:-1], methods, chunk_size=chunk_size)
            comp = engine.compress(pre, method)
            got = answer_from(engine, comp, ids[-1:], max_new_tokens)
        else:
            pre, comp = shared, compressed
            got = answer_from(engine, comp, question, max_new_tokens, answer_prefix)
        results.append(EngineAnswer(
            question=question, text=got.text, tokens_in=pre.n_tokens, achieved_ratio=comp.achieved_ratio,
            cache_bytes_before=pre.bytes, cache_bytes=comp.bytes, prefill_seconds=pre.seconds,
            compress_seconds=comp.compress_seconds, decode_seconds=got.seconds, new_tokens=got.new_tokens,
            method=comp.label, chunk_size=pre.chunk_size, engine=engine.name,
            first_token_seconds=got.first_token_seconds))
    return results
