"""tokenzip's kv methods inside llama.cpp: score what llama.cpp computes, evict positions from its cache.

The context is decoded by llama.cpp; while it runs, a ``cb_eval`` callback reads the post-RoPE queries, keys and
values of the layers the method compresses (:mod:`~tokenzip.engines.llamacpp.capture`), so scoring costs no second
model: the method scores them with tokenzip's own scorers, exactly as in the PyTorch path (a
:class:`~tokenzip.kv.base.LayerContext` per layer; KVzip's reconstruction is replayed through llama.cpp itself).
A llama.cpp cache cell holds one position for every layer, so the kept positions are one set for all layers and
heads (:meth:`tokenzip.kv.base.KVMethod.select_shared`, as ``positions="shared"`` in the PyTorch path), always with
the newest position (llama.cpp continues a sequence only from its last position). The others are removed with
``llama_memory_seq_rm``; the kept ones keep their original positions, and questions continue after the original
context. Scores from llama.cpp's own tensors rather than a PyTorch re-run of the same weights: a PyTorch prefill would
cost more than llama.cpp's whole prefill (the speed this engine is for) and score tensors llama.cpp never used.

Chunked prefill (``chunk_size``): the context is decoded ``chunk_size`` tokens at a time and reduced to the method's
budget after every chunk, scoring the kept entries (their keys and values are kept in memory for the target layers)
with the new chunk's, as :mod:`tokenzip.kv.chunked` does; so the engine's context needs only budget + chunk (+ the
question and answer, + KVzip's replay) cells, and a document longer than it can be answered.

Every compressed context is saved with ``llama_state_seq_get_data`` and restored with ``set_data`` before each
question (:meth:`LlamaCppEngine.generate`), so every question sees the same context.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from tokenzip.engines.base import Compressed, Prefilled
from tokenzip.engines.llamacpp.capture import TensorReader
from tokenzip.engines.llamacpp.layout import Layout
from tokenzip.engines.llamacpp.lib import LlamaContext, LlamaModel
from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import check_context, check_prefill
from tokenzip.kv.base import (
    ALL_QUERIES,
    SHARED,
    KVMethod,
    LayerContext,
    same_method,
    shared_methods,
    shared_refusal,
    target_layers,
)
from tokenzip.kv.chunked import chunk_sizes
from tokenzip.kv.context import ReplayContext
from tokenzip.method import get_method
from tokenzip.ops.attention import received_attention

MAGIC = b"tokenzip-llamacpp/1\n"
CELL_STEP = 256  # contexts sized on demand grow in steps of this many cells


def llamacpp_methods() -> list[str]:
    """The kv methods the llama.cpp engine runs: those that score entries and keep a uniform top-k."""
    return shared_methods()


def check_method(method: KVMethod | None, chunk_size: int | None = None) -> None:
    """Refuse, before any work, a method llama.cpp cannot run (naming the ones it can), or a chunk size the method
    cannot compress between."""
    if method is None:
        return
    if not isinstance(method, KVMethod):
        raise TokenzipError(f"the llama.cpp engine runs kv methods (tz.get_method(name, stage='kv')), got {method!r}")
    why = shared_refusal(method)
    if why:
        raise TokenzipError(f"kv.{method.name} cannot run in llama.cpp ({why}: a llama.cpp cache cell holds one "
                            f"position for every layer and head); methods that can: {', '.join(llamacpp_methods())}")
    size = chunk_size if chunk_size is not None else method.chunk_size
    if size is not None:
        method.check_chunks(size)


@dataclass
class _Captured:
    """A dense prefill in llama.cpp: its ids, its cache (llama.cpp's bytes) and what the methods score."""

    ids: list[int]
    dense: bytes
    keys: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor]
    queries: dict[int, torch.Tensor]
    window: int
    memo: dict[Any, tuple[Any, float]] = field(default_factory=dict)
    received: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Held:
    """A compressed context: llama.cpp's bytes of the kept cells, and their positions."""

    data: bytes
    positions: list[int]


class _Tokenizer:
    """The slice of a Hugging Face tokenizer KVzip calls to tokenize its instruction."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model

    def __call__(self, text: str, add_special_tokens: bool = False, return_tensors: str = "pt") -> Any:
        return SimpleNamespace(input_ids=torch.tensor([self.model.tokenize(text, add_special_tokens)]))


class LlamaCppEngine:
    """A GGUF model in llama.cpp, as a tokenzip engine (:class:`tokenzip.engines.base.Engine`).

    ``n_ctx``: the cells of llama.cpp's context (the most positions it holds at once; a context, KVzip's replay,
    a question and its answer must fit, or be prefilled in chunks); None sizes it to each need. ``threads``: llama.cpp
    threads (None: llama.cpp's default). ``flash_attn``: llama.cpp's flash attention (off, as in llama-cpp-python's
    ``Llama``). ``n_batch``: tokens per decode call.
    """

    name = "llamacpp"

    def __init__(self, gguf: str | Path, n_ctx: int | None = None, threads: int | None = None, n_batch: int = 512,
                 flash_attn: bool = False) -> None:
        self.model = LlamaModel(gguf)
        self.layout = Layout.from_model(self.model)
        self.reader = TensorReader(self.layout)
        self.n_ctx = n_ctx
        self.threads = threads
        self.n_batch = n_batch
        self.flash_attn = flash_attn
        self.tokenizer = _Tokenizer(self.model)
        self._ctx: LlamaContext | None = None
        self._holding: Any = None  # the saved state the context's cache holds unchanged (no restore needed)
        self._next: int | None = None  # the position step() feeds next
        self.limit = n_ctx or self.model.n_ctx_train

    # --- text -----------------------------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.model.tokenize(text, special)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.model.detokenize(ids)

    # --- the llama.cpp context ------------------------------------------------------------------------------
    def context(self, cells: int, what: str = "this") -> LlamaContext:
        """The engine's llama.cpp context, with at least ``cells`` cells (refused when ``n_ctx`` is smaller)."""
        if cells > self.limit:
            raise TokenzipError(
                f"{what} needs {cells} cache cells but the engine's context holds {self.limit} (n_ctx): prefill the "
                "context in chunks (chunk_size=512) with a budget (a method with budget=N), or give a larger n_ctx")
        if self._ctx is None or self._ctx.n_ctx < cells:
            size = self.n_ctx or min(self.limit, -(-max(cells, 2 * CELL_STEP) // CELL_STEP) * CELL_STEP)
            if self._ctx is not None:
                self._ctx.close()
            self._holding = self._next = None
            self._ctx = LlamaContext(self.model, size, n_batch=self.n_batch, threads=self.threads or _default_threads(),
                                     flash_attn=self.flash_attn, on_tensor=self.reader)
        return self._ctx

    # --- methods ----------------------------------------------------------------------------------------------
    def check_method(self, method: KVMethod | None, chunk_size: int | None = None) -> None:
        check_method(method, chunk_size)

    def _targets(self, methods: Sequence[KVMethod]) -> list[int]:
        layers: set[int] = set()
        for m in methods:
            layers |= set(target_layers(self.layout, m.compress_sliding))
        return sorted(layers)

    # --- prefill ----------------------------------------------------------------------------------------------
    def prefill(self, context: str | Sequence[int], methods: Sequence[KVMethod | str] = (),
                chunk_size: int | None = None) -> Prefilled:
        live = [_as_method(m) for m in methods]
        live = [m for m in live if m is not None]
        chunk_size = check_prefill(live, chunk_size)
        for m in live:
            self.check_method(m, chunk_size)
        ids = self.tokenize(context, True) if isinstance(context, str) else list(context)
        check_context(context, len(ids))
        if chunk_size is not None:
            return self._chunked(ids, live[0] if live else None, chunk_size)
        replay = max((self._replay_length(m, len(ids)) for m in live), default=0)
        what = f"a context of {len(ids)} tokens" + (" and KVzip's replay" if replay else "")
        ctx = self.context(len(ids) + replay, what)
        window = max([m.query_window() for m in live] + [ALL_QUERIES if any(m.wants_received() for m in live) else 0])
        ctx.clear()
        self._holding = self._next = None
        start = time.perf_counter()
        with self.reader.reading(self._targets(live), window) as got:
            ctx.decode(ids, 0, logits="none")
        dense = ctx.save()
        seconds = time.perf_counter() - start
        state = _Captured(ids, dense, got.get("keys", {}), got.get("values", {}), got.get("queries", {}), window)
        self._holding = state
        return Prefilled(self.name, len(ids), seconds, len(dense), state, peak_entries=len(ids))

    def _replay_length(self, method: KVMethod, n: int) -> int:
        """Cells KVzip's reconstruction adds after a context of ``n`` tokens (0 for methods without a replay)."""
        prompt = self._replay_prompt(method)
        return 0 if prompt is None else n + prompt

    def _replay_prompt(self, method: KVMethod) -> int | None:
        """Tokens of the prompt KVzip's reconstruction repeats the context after (None: a method without a replay)."""
        if getattr(method, "prompt", None) is None or getattr(method, "replay", "full") != "full":
            return None
        return len(self.tokenize(method.prompt, False))

    # --- compression ------------------------------------------------------------------------------------------
    def compress(self, prefilled: Prefilled, method: KVMethod | str | None) -> Compressed:
        method = _as_method(method)
        self.check_method(method)
        if prefilled.chunk_size is not None:
            return self._chunked_result(prefilled, method)
        st: _Captured = prefilled.state
        n = len(st.ids)
        if method is None or method.is_noop(n):
            return Compressed(self.name, n, n, len(st.dense), 0.0, _Held(st.dense, list(range(n))), method)
        if method.query_window() > st.window:
            raise TokenzipError(f"{method.name} needs the last {method.query_window()} queries; this prefill captured "
                                f"{st.window}: pass it in prefill(..., methods=[...])")
        start = time.perf_counter()
        ctx = self.context(n + self._replay_length(method, n), f"{method.name} on {n} tokens")
        self._restore(ctx, st, st.dense)
        contexts = [self._layer(st, i, method) for i in target_layers(self.layout, method.compress_sliding)]
        missing = [c.layer_idx for c in contexts if c.keys is None]
        if missing:
            raise TokenzipError(f"this prefill did not read layers {missing}: pass {method.name} in prefill(..., "
                                "methods=[...])")
        replay = ReplayContext(input_ids=torch.tensor([st.ids]), seen=n, bos_token_id=self.model.bos,
                               tokenizer=self.tokenizer, replay=functools.partial(self._replay, ctx, st, contexts),
                               memo=st.memo)
        method.prepare(replay, contexts)
        kept = self._select(method, contexts)
        keep = set(kept)
        ctx.remove_positions(p for p in range(n) if p not in keep)
        held = _Held(ctx.save(), kept)
        self._holding = held
        seconds = time.perf_counter() - start + replay.charged_seconds
        return Compressed(self.name, n, len(kept), len(held.data), seconds, held, method)

    def _restore(self, ctx: LlamaContext, owner: Any, data: bytes) -> None:
        """Put ``data`` (the saved state of ``owner``) in the cache, unless the cache holds it unchanged already."""
        self._next = None
        if self._holding is not owner:
            ctx.load(data)
        self._holding = owner

    @staticmethod
    def _select(method: KVMethod, contexts: list[LayerContext], keep: torch.Tensor | None = None) -> list[int]:
        """The positions (indices into the contexts' entries) ``method`` keeps, one set for every layer and head
        (:meth:`~tokenzip.kv.base.KVMethod.select_shared`)."""
        indices, valid = method.select_shared(contexts, keep)
        return indices[0][valid[0]].tolist()

    def _layer(self, st: _Captured, i: int, method: KVMethod) -> LayerContext:
        keys = st.keys.get(i)
        received = None
        if method.wants_received() and keys is not None:
            if i not in st.received:
                st.received[i] = received_attention(st.queries[i], keys, self.layout.scaling)
            received = st.received[i]
        return LayerContext(layer_idx=i, num_layers=self.layout.num_layers, keys=keys, values=st.values.get(i),
                            queries=st.queries.get(i), token_valid=None, scaling=self.layout.scaling,
                            is_sliding=self.layout.is_sliding(i), adapter=self.layout, received=received)

    def _replay(self, ctx: LlamaContext, st: _Captured, contexts: list[LayerContext], input_ids: torch.Tensor,
                on_attention: Any) -> None:
        """KVzip's reconstruction through llama.cpp: ``input_ids`` decoded after the cached entries (at the positions
        after the tokens seen), ``on_attention(layer, queries, keys)`` called for every compressed layer with the
        replay's queries and the cached + replayed keys; then the cache is put back as it was."""
        seen = max(int(c.n_tokens) for c in contexts) if not contexts[0].chunked else int(contexts[0].seen[0])
        layers = [c.layer_idx for c in contexts]
        try:
            with self.reader.reading(layers, ALL_QUERIES) as got:
                ctx.decode(input_ids[0].tolist(), seen, logits="none")
            for c in contexts:
                keys = torch.cat([c.keys, got["keys"][c.layer_idx]], dim=2)
                on_attention(SimpleNamespace(layer_idx=c.layer_idx), got["queries"][c.layer_idx], keys)
        finally:
            self._holding = None
            self._restore(ctx, st, st.dense)

    # --- chunked prefill ----------------------------------------------------------------------------------------
    def _chunked(self, ids: list[int], method: KVMethod | None, chunk_size: int) -> Prefilled:
        n = len(ids)
        sizes = chunk_sizes(n, chunk_size)
        final = method.kept(n) if method is not None else n
        prompt = self._replay_prompt(method) if method is not None else None  # each chunk is replayed after it
        replay = 0 if prompt is None else max(sizes) + prompt
        cells = (min(n, final + max(sizes)) if method is not None else n) + replay
        ctx = self.context(cells, f"a chunked prefill of {n} tokens (budget {final} + chunk {max(sizes)})")
        ctx.clear()
        self._holding = self._next = None
        targets = self._targets([method]) if method is not None else []
        window = method.query_window() if method is not None else 0
        held: list[int] = []
        keys: dict[int, torch.Tensor] = {}
        values: dict[int, torch.Tensor] = {}
        carried: dict[int, torch.Tensor] = {}
        peak = compress_seconds = 0.0
        start = time.perf_counter()
        offset = 0
        memo: dict[Any, tuple[Any, float]] = {}
        for size in sizes:
            chunk = ids[offset : offset + size]
            with self.reader.reading(targets, window) as got:
                ctx.decode(chunk, offset, logits="none")
            self._holding = None
            positions = held + list(range(offset, offset + size))
            offset += size
            peak = max(peak, len(positions))
            if method is None:
                held = positions
                continue
            began = time.perf_counter()
            contexts = []
            for i in targets:  # the kept entries are held in float16 (as llama.cpp's cache holds them)
                k = torch.cat([keys.pop(i).float(), got["keys"][i]], dim=2) if i in keys else got["keys"][i]
                v = torch.cat([values.pop(i).float(), got["values"][i]], dim=2) if i in values else got["values"][i]
                carry = carried.get(i)
                if carry is not None:
                    carry = torch.cat([carry, carry.new_zeros(*carry.shape[:2], size)], dim=-1)
                received = received_attention(got["queries"][i], k, self.layout.scaling) if method.wants_received() \
                    else None
                contexts.append(LayerContext(
                    layer_idx=i, num_layers=self.layout.num_layers, keys=k, values=v, queries=got["queries"].get(i),
                    token_valid=None, scaling=self.layout.scaling, is_sliding=self.layout.is_sliding(i),
                    adapter=self.layout, received=received, seen=torch.tensor([offset]), carried=carry))
            saved = ctx.save() if prompt is not None else b""
            state = _Captured(chunk, saved, {}, {}, {}, window, memo)
            replay = ReplayContext(input_ids=torch.tensor([chunk]), seen=offset, bos_token_id=self.model.bos,
                                   tokenizer=self.tokenizer, memo={},
                                   replay=functools.partial(self._replay, ctx, state, contexts))
            method.prepare(replay, contexts)
            keep = method.keep_counts(contexts[0])
            if int(keep[0]) < len(positions):
                kept = self._select(method, contexts, keep)
            else:
                kept = list(range(len(positions)))
            index = torch.tensor(kept)
            for ctx_i in contexts:
                state_i = method.carry(ctx_i)
                if state_i is not None:
                    carried[ctx_i.layer_idx] = state_i.expand(1, ctx_i.keys.shape[1], -1)[..., index]
                keys[ctx_i.layer_idx] = ctx_i.keys[:, :, index].half()
                values[ctx_i.layer_idx] = ctx_i.values[:, :, index].half()
            del contexts, got, replay
            keep_set = set(kept)
            ctx.remove_positions(positions[j] for j in range(len(positions)) if j not in keep_set)
            self._holding = None
            held = [positions[j] for j in kept]
            compress_seconds += time.perf_counter() - began
        result = _Held(ctx.save(), held)
        self._holding = result
        seconds = time.perf_counter() - start
        return Prefilled(self.name, n, seconds, len(result.data), result, method=method, chunk_size=chunk_size,
                         compress_seconds=compress_seconds, peak_entries=int(peak))

    def _chunked_result(self, prefilled: Prefilled, method: KVMethod | None) -> Compressed:
        given = prefilled.method
        if not same_method(method, given):
            raise TokenzipError(f"this prefill was compressed chunk by chunk by "
                                f"{given.describe() if given else 'no method'}; it cannot give "
                                f"{method.describe() if method else 'the uncompressed context'}: prefill again")
        held: _Held = prefilled.state
        return Compressed(self.name, prefilled.n_tokens, len(held.positions), len(held.data),
                          prefilled.compress_seconds, held, method)

    # --- answering ------------------------------------------------------------------------------------------------
    def generate(self, compressed: Compressed, prompt: str | Sequence[int], max_new_tokens: int) -> Iterator[int]:
        ids = self.tokenize(prompt, False) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise TokenzipError("the question is empty")
        logits = self.start(compressed, ids, max_new_tokens)
        for _ in range(max_new_tokens):
            token = int(np.argmax(logits))
            if self.model.is_end(token):
                return
            yield token
            logits = self.step(token)

    def start(self, compressed: Compressed | None, ids: Sequence[int], room: int) -> np.ndarray:
        """Restore ``compressed`` (None: an empty context) and feed ``ids`` at the positions after its original
        context; the logits after the last of them, ``(n_vocab,)``. :meth:`step` then feeds one token at a time
        (a sampler's loop; ``room``: the most tokens it will feed)."""
        ids = list(ids)
        if not ids:
            raise TokenzipError("nothing to feed after the context")
        held: _Held | None = compressed.state if compressed is not None else None
        kept = len(held.positions) if held is not None else 0
        ctx = self.context(kept + len(ids) + room, "the context, question and answer")
        if held is not None and held.positions:
            ctx.load(held.data)  # always: eviction leaves holes between the cells, a restore lays them out as every
        else:  # question sees them (the same cells in other places sum in another order)
            ctx.clear()
        self._holding = self._next = None
        start = compressed.n_tokens if compressed is not None else 0
        ctx.decode(ids, start, logits="last")
        self._next = start + len(ids)
        return ctx.logits()

    def step(self, token: int) -> np.ndarray:
        """Feed ``token`` after what :meth:`start` (and earlier steps) fed; the logits after it."""
        ctx = self._ctx
        if ctx is None or self._next is None:
            raise TokenzipError("step() follows start()")
        ctx.decode([token], self._next, logits="last")
        self._next += 1
        return ctx.logits()

    def nll(self, compressed: Compressed, text: str) -> tuple[float, int]:
        ids = self.tokenize(text, False)
        if len(ids) < 2:
            raise TokenzipError("the continuation needs at least two tokens to score")
        held: _Held = compressed.state
        ctx = self.context(len(held.positions) + len(ids), "the context and continuation")
        ctx.load(held.data)
        self._holding = self._next = None
        total = 0.0
        for offset in range(0, len(ids) - 1, self.n_batch):  # logits for every fed token but the last
            part = ids[offset : min(offset + self.n_batch, len(ids) - 1)]
            ctx.decode(part, compressed.n_tokens + offset, logits="all")
            for j, _ in enumerate(part):
                logits = ctx.logits(j).astype(np.float64)
                top = logits.max()
                total += float(np.log(np.exp(logits - top).sum()) + top - logits[ids[offset + j + 1]])
        return total / (len(ids) - 1), len(ids) - 1

    # --- saving ----------------------------------------------------------------------------------------------------
    def save(self, compressed: Compressed) -> bytes:
        held: _Held = compressed.state
        header = json.dumps({"model": self.model.path.name, "n_tokens": compressed.n_tokens,
                             "positions": held.positions, "compress_seconds": compressed.compress_seconds,
                             "method": compressed.method.describe() if compressed.method else None}).encode()
        return MAGIC + len(header).to_bytes(8, "little") + header + held.data

    def restore(self, data: bytes) -> Compressed:
        if not data.startswith(MAGIC):
            raise TokenzipError("not a compressed context saved by tokenzip's llama.cpp engine")
        size = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 8], "little")
        header = json.loads(data[len(MAGIC) + 8 : len(MAGIC) + 8 + size])
        if header["model"] != self.model.path.name:
            raise TokenzipError(f"this context was saved from {header['model']}, not {self.model.path.name}")
        state = data[len(MAGIC) + 8 + size :]
        held = _Held(state, header["positions"])
        return Compressed(self.name, header["n_tokens"], len(held.positions), len(state), header["compress_seconds"],
                          held, None)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        self.model.close()


def _as_method(method: KVMethod | str | None) -> KVMethod | None:
    """The method as llama.cpp runs it: with ``positions="shared"`` (what its label then says)."""
    if isinstance(method, str):
        method = get_method(method, stage="kv")
    if isinstance(method, KVMethod) and method.positions != SHARED and shared_refusal(method) is None:
        method = dataclasses.replace(method, positions=SHARED)
    return method


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))
