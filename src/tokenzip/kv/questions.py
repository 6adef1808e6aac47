"""Questions about one context, answered from a cache compressed once: the protocol of :func:`tokenzip.kv.answer`
(see :mod:`tokenzip.kv.answer`) written once, over a *runner* that tokenizes, prefills, compresses and generates.

:func:`answer` runs it on a model and its tokenizer (:class:`ModelRunner`, on :mod:`tokenzip.kv`'s own records);
:func:`tokenzip.engines.answer.answer` runs it on any engine (:class:`tokenzip.engines.base.Engine`, whose methods
take the same steps; the torch engine is a :class:`ModelRunner` wrapping its records in the engine protocol's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import (
    CompressedCache,
    KVAnswer,
    Prefill,
    answer_tokens,
    check_context,
    check_max_new_tokens,
    check_room,
    one_chunk_size,
    prefill,
)
from tokenzip.kv.base import KVMethod
from tokenzip.kv.chunked import check_chunk_size
from tokenzip.method import get_method


class ModelRunner:
    """A Hugging Face causal LM and its tokenizer, taking the steps of answering questions about a context with
    :mod:`tokenzip.kv`: text to ids and back, a prefill (:func:`tokenzip.kv.prefill`), its compression
    (:meth:`Prefill.compress`), greedy tokens after it (:func:`tokenzip.kv.answer.answer_tokens`)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special).input_ids)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def check_method(self, method: KVMethod | None, chunk_size: int | None = None) -> None:
        """A kv method (or None) that can compress while prefilling in chunks of ``chunk_size`` (if given)."""
        if method is not None and not isinstance(method, KVMethod):
            raise TokenzipError(f"expected a kv method (tz.get_method(name, stage='kv')), got {method!r}")
        if chunk_size is not None:
            check_chunk_size(chunk_size)
            if method is not None:
                method.check_chunks(chunk_size)

    def prefill(self, context: str | Sequence[int], methods: Sequence[KVMethod] = (),
                chunk_size: int | None = None) -> Prefill:
        text = context if isinstance(context, str) else torch.tensor([list(context)], device=self.device)
        return prefill(self.model, self.tokenizer, text, methods, chunk_size=chunk_size)

    def compress(self, prefilled: Prefill, method: KVMethod | None) -> CompressedCache:
        return prefilled.compress(method)

    def generate(self, compressed: CompressedCache, prompt: str | Sequence[int], max_new_tokens: int) -> Iterator[int]:
        """Greedy token ids after ``prompt`` (text or ids), fed at the positions after the original context."""
        ids = self.tokenize(prompt, False) if isinstance(prompt, str) else list(prompt)
        check_room(self.model, compressed.seen, len(ids), max_new_tokens)
        yield from answer_tokens(self.model, compressed, torch.tensor([ids], device=self.device), max_new_tokens)


@dataclass
class Generated:
    """One answer from a compressed context: ``seconds`` covers the question and generation."""

    text: str
    new_tokens: int
    first_token_seconds: float
    seconds: float


def generate_answer(runner: Any, compressed: Any, question: str | Sequence[int], max_new_tokens: int = 32,
                    answer_prefix: str = "") -> Generated:
    """Greedy answer to ``question`` (text, then ``answer_prefix``; or token ids) from ``compressed`` (made by
    ``runner``: a :class:`ModelRunner` or an engine), timed to its first token and to its end."""
    check_max_new_tokens(max_new_tokens)
    ids = runner.tokenize(question + answer_prefix, False) if isinstance(question, str) else list(question)
    start = time.perf_counter()
    first = 0.0
    tokens = []
    for token in runner.generate(compressed, ids, max_new_tokens):
        if not tokens:
            first = time.perf_counter() - start
        tokens.append(token)
    seconds = time.perf_counter() - start
    return Generated(runner.detokenize(tokens), len(tokens), first or seconds, seconds)


def answer_each(runner: Any, context: str, questions: str | Sequence[str], method: KVMethod | str | None = None,
                query_aware: bool = False, max_new_tokens: int = 32, answer_prefix: str = "",
                chunk_size: int | None = None) -> list[tuple[KVAnswer, Generated]]:
    """Prefill and compress ``context`` once with ``runner``, then answer each question from it: its
    :class:`KVAnswer` and the :class:`Generated` it came from (as :func:`answer`; ``runner``: a :class:`ModelRunner`
    or an engine)."""
    method = get_method(method, stage="kv") if isinstance(method, str) else method
    questions = [questions] if isinstance(questions, str) else list(questions)
    if not questions:
        raise TokenzipError("give at least one question")
    check_context(context)  # also when query-aware, where the question alone would make a prefill
    check_max_new_tokens(max_new_tokens)
    methods = [method] if method is not None else []
    chunk_size = one_chunk_size(chunk_size, methods)
    runner.check_method(method, chunk_size)  # every runner refuses the same inputs before any work
    shared = compressed = None
    if not query_aware:
        shared = runner.prefill(context, methods, chunk_size=chunk_size)
        compressed = runner.compress(shared, method)
    results = []
    for question in questions:
        if query_aware:  # the question is compressed with the context; decoding starts from its last token
            ids = runner.tokenize(context, True) + runner.tokenize(question + answer_prefix, False)
            pre = runner.prefill(ids[:-1], methods, chunk_size=chunk_size)
            comp = runner.compress(pre, method)
            got = generate_answer(runner, comp, ids[-1:], max_new_tokens)
        else:
            pre, comp = shared, compressed
            got = generate_answer(runner, comp, question, max_new_tokens, answer_prefix)
        results.append((KVAnswer(
            question=question, text=got.text, tokens_in=pre.n_tokens, achieved_ratio=comp.achieved_ratio,
            cache_bytes_before=pre.bytes, cache_bytes=comp.bytes, prefill_seconds=pre.seconds,
            compress_seconds=comp.compress_seconds, decode_seconds=got.seconds, new_tokens=got.new_tokens,
            method=comp.method.describe() if comp.method else "none", chunk_size=pre.chunk_size), got))
    return results


def answer(model: Any, tok: Any, context: str, questions: str | Sequence[str], method: KVMethod | str | None = None,
           query_aware: bool = False, max_new_tokens: int = 32, answer_prefix: str = "",
           chunk_size: int | None = None) -> list[KVAnswer]:
    """Prefill and compress ``context`` once, then answer each question from the same compressed cache.

    With ``query_aware=True`` each question is appended to the context before compression (one
    prefill per question). ``chunk_size`` (or the method's own) compresses while prefilling, chunk by
    chunk (see :func:`tokenzip.kv.prefill`). Returns one :class:`KVAnswer` per question, with its measurements.
    """
    return [got for got, _ in answer_each(ModelRunner(model, tok), context, questions, method, query_aware,
                                          max_new_tokens, answer_prefix, chunk_size)]
