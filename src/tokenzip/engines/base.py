"""The engine protocol: one interface for every runtime that answers questions from a compressed context.

An engine loads a model, prefills a context (whole, or in chunks compressed as they are read), compresses it with a kv
method, answers questions from it (token by token, the context put back after each), saves a compressed context as
bytes and restores it, and reports the bytes it holds and the seconds each step took. Code above an engine (the
``tokenzip generate`` and ``tokenzip bench`` kv stage, :func:`tokenzip.engines.answer`, the server) calls only this
protocol, so one option (``--engine llamacpp``) picks the runtime:

- ``torch``: Hugging Face transformers in eager PyTorch (:mod:`tokenzip.kv`), every kv method, per-head selection;
- ``llamacpp``: llama.cpp through llama-cpp-python (:mod:`tokenzip.engines.llamacpp`): the methods that score entries
  and keep a uniform top-k, with one set of positions for every layer and head (a llama.cpp cache cell holds one
  position for all layers).

A method an engine cannot run is refused by :meth:`Engine.check_method` before any work, naming the ones it can.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# kv methods (tokenzip.kv.base.KVMethod) typed by their base class, so that tokenzip.engines (ENGINES, read by the
# command line and the server) loads no torch
from tokenzip.method import Method


@dataclass
class Prefilled:
    """A prefilled context, reusable by :meth:`Engine.compress` for several methods and ratios (``state`` belongs to
    the engine that made it). After a chunked prefill (``chunk_size``) the context is already compressed by
    ``method``; its ``seconds`` then include that compression, ``compress_seconds`` of them, and ``bytes`` is what was
    held at the end (never the dense cache)."""

    engine: str
    n_tokens: int
    seconds: float
    bytes: int
    state: Any = field(repr=False)
    method: Method | None = None
    chunk_size: int | None = None
    compress_seconds: float = 0.0
    peak_entries: int = 0  # the most cache entries (positions) held at once while prefilling


@dataclass
class Compressed:
    """A compressed context ready to answer questions: ``n_tokens`` is the original length (questions continue at
    the positions after it), ``kept`` the positions it holds (per layer and head on average when they differ),
    ``bytes`` what holding it costs."""

    engine: str
    n_tokens: int
    kept: float
    bytes: int
    compress_seconds: float
    state: Any = field(repr=False)
    method: Method | None = None

    @property
    def achieved_ratio(self) -> float:
        """Fraction of the context's entries removed."""
        return 0.0 if not self.n_tokens else 1.0 - self.kept / self.n_tokens

    @property
    def label(self) -> str:
        return self.method.describe() if self.method else "none"


@runtime_checkable
class Engine(Protocol):
    """What every engine does (see the module docstring)."""

    name: str

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Token ids of ``text`` (``special``: as a context starts, with the model's BOS)."""
        ...

    def detokenize(self, ids: Sequence[int]) -> str:
        ...

    def check_method(self, method: Method | None, chunk_size: int | None = None) -> None:
        """Raise :class:`~tokenzip.errors.TokenzipError` if this engine cannot run ``method`` (with ``chunk_size``),
        naming the methods it can; before any work."""
        ...

    def prefill(self, context: str, methods: Sequence[Method] = (), chunk_size: int | None = None) -> Prefilled:
        """Read ``context`` keeping what ``methods`` need to compress it; with ``chunk_size`` (or the one method's),
        read it in chunks, compressed by that method between them."""
        ...

    def compress(self, prefilled: Prefilled, method: Method | None) -> Compressed:
        """``prefilled`` compressed by ``method`` (None: as it is); ``prefilled`` stays reusable."""
        ...

    def generate(self, compressed: Compressed, prompt: str | Sequence[int], max_new_tokens: int) -> Iterator[int]:
        """Greedy token ids after feeding ``prompt`` (text or ids) at the positions after the original context, until
        an end-of-generation token (not yielded) or ``max_new_tokens``; the context is as before for the next call."""
        ...

    def nll(self, compressed: Compressed, text: str) -> tuple[float, int]:
        """Mean negative log-likelihood of ``text``'s tokens after the first, teacher-forced after ``compressed``, and
        how many were scored."""
        ...

    def save(self, compressed: Compressed) -> bytes:
        """``compressed`` as bytes, for :meth:`restore` by an engine of the same model."""
        ...

    def restore(self, data: bytes) -> Compressed:
        ...
