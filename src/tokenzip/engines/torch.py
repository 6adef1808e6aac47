"""The PyTorch engine: Hugging Face transformers with tokenzip's kv runtime (:mod:`tokenzip.kv`), as an
:class:`~tokenzip.engines.base.Engine`. Every kv method runs here, with per-head selection or, with
``positions="shared"``, the one set of positions llama.cpp can keep."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import torch

from tokenzip.engines.base import Compressed, Prefilled
from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import CompressedCache
from tokenzip.kv.base import KVMethod
from tokenzip.kv.cache import restore, snapshot
from tokenzip.kv.questions import ModelRunner
from tokenzip.models.attachment import CacheMasks
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.models.loading import load_model
from tokenzip.ops.information import mean_nll

FORMAT = "tokenzip-torch/1"


class TorchEngine(ModelRunner):
    """A Hugging Face causal LM and its tokenizer, answering from caches compressed by :mod:`tokenzip.kv`: the steps of
    :class:`~tokenzip.kv.questions.ModelRunner`, their records wrapped in the engine protocol's."""

    name = "torch"

    @classmethod
    def load(cls, model: str = "gemma-3-270m", dtype: str = "float32", device: str | None = None) -> TorchEngine:
        """The engine on ``model`` (``tz.load_model``'s names, HF ids and paths)."""
        return cls(*load_model(model, dtype=dtype, device=device))

    def prefill(self, context: str | Sequence[int], methods: Sequence[KVMethod] = (),
                chunk_size: int | None = None) -> Prefilled:
        pre = super().prefill(context, methods, chunk_size)
        return Prefilled(self.name, pre.n_tokens, pre.seconds, pre.bytes, pre, method=pre.method,
                         chunk_size=pre.chunk_size, compress_seconds=pre.compress_seconds,
                         peak_entries=pre.n_tokens if pre.chunk_size is None else 0)

    def compress(self, prefilled: Prefilled, method: KVMethod | None) -> Compressed:
        return self.hold(super().compress(prefilled.state, method))

    def hold(self, comp: CompressedCache) -> Compressed:
        """A compressed cache made by :mod:`tokenzip.kv` (or a pipeline's kv stage) as this engine's
        :class:`~tokenzip.engines.base.Compressed`."""
        n = comp.seen
        return Compressed(self.name, n, n * (1 - comp.achieved_ratio), comp.bytes, comp.compress_seconds, comp,
                          comp.method)

    def generate(self, compressed: Compressed, prompt: str | Sequence[int], max_new_tokens: int) -> Iterator[int]:
        yield from super().generate(compressed.state, prompt, max_new_tokens)

    @torch.no_grad()
    def nll(self, compressed: Compressed, text: str) -> tuple[float, int]:
        ids = torch.tensor([self.tokenize(text, False)], device=self.device)
        if ids.shape[1] < 2:
            raise TokenzipError("the continuation needs at least two tokens to score")
        comp: CompressedCache = compressed.state
        with comp.serving() as cache:
            positions = comp.positions(0, ids.shape[1], ids.device)
            logits = self.model(input_ids=ids, **cache_kwargs(self.model, cache), position_ids=positions,
                                use_cache=True).logits
        return mean_nll(logits[0, :-1], ids[0, 1:])

    def save(self, compressed: Compressed) -> bytes:
        """The cache's layers and masks (``torch.save``; restore only bytes this engine saved)."""
        comp: CompressedCache = compressed.state
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, "layers": snapshot(comp.cache), "masks": comp.masks.snapshot(),
                    "seen": comp.seen, "counts": comp.counts, "compress_seconds": comp.compress_seconds,
                    "kept": compressed.kept}, buffer)
        return buffer.getvalue()

    def restore(self, data: bytes) -> Compressed:
        try:
            saved = torch.load(io.BytesIO(data), weights_only=False, map_location=self.device)
        except Exception:  # noqa: BLE001 - whatever torch.load raises on bytes it did not write
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise TokenzipError("not a compressed context saved by tokenzip's torch engine")
        cache = new_cache(self.model)
        restore(cache, saved["layers"])
        masks = CacheMasks()
        masks.restore(saved["masks"])
        comp = CompressedCache(self.model, cache, masks, saved["seen"], None, saved["compress_seconds"],
                               saved["counts"])
        return Compressed(self.name, saved["seen"], saved["kept"], comp.bytes, saved["compress_seconds"], comp, None)
