"""The KV-cache method protocol: a method scores the cached tokens of a layer, a reducer keeps the best.

After prefill, each compressed layer becomes a :class:`LayerContext` (its keys and values, the last
queries of the prefill, padding) and a method returns a :class:`LayerResult` (the entries kept, and
which of them are valid per batch row and head). Most methods only define :meth:`KVMethod.score`;
wrappers and quantizers override :meth:`KVMethod.compress_layer` or :meth:`KVMethod.compress_model`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from tokenzip.errors import TokenzipError
from tokenzip.kv.context import DecodeContext, LayerContext, LayerResult, ReplayContext
from tokenzip.method import Method, get_method, methods
from tokenzip.ops.topk import gather_tokens, keep_shared, keep_topk

ALL_QUERIES = 1 << 30  # query_window() of methods that need every prefill query (Compactor's non-causal attention)
PER_HEAD, SHARED = "per_head", "shared"  # KVMethod.positions: a selection per layer and head, or one for all


def target_layers(adapter: Any, compress_sliding: bool) -> list[int]:
    """Layers a method compresses (``adapter``: a :class:`tokenzip.models.decoders.DecoderAdapter`): all, except
    the sliding-window layers of hybrid models by default."""
    sliding = [adapter.is_sliding(i) for i in range(adapter.num_layers)]
    hybrid = any(sliding) and not all(sliding)
    return [i for i, s in enumerate(sliding) if compress_sliding or not (s and hybrid)]


@dataclass
class KVMethod(Method):
    """Base of KV-cache methods: score the cached tokens, keep the top ``kept(N)`` per head.

    ``compress_sliding``: for models with sliding-window layers (Gemma 3), those layers are already
    bounded and are left untouched by default; set it to compress them too.

    ``chunk_size``: prefill the context ``chunk_size`` tokens at a time and reduce each compressed layer to
    its budget after every chunk (:mod:`tokenzip.kv.chunked`), so no layer holds more than budget + chunk
    entries; for methods with ``chunkable`` set. Each method's docstring says what chunking changes.

    ``positions``: ``"per_head"`` (default) keeps each layer's and head's own top entries; ``"shared"`` keeps one set
    of positions for every compressed layer and head, a position's score being the highest any of them gives it,
    and always the newest position (:func:`tokenzip.ops.topk.keep_shared`). That is what an engine whose cache
    cells hold one position for all layers can evict (llama.cpp, :mod:`tokenzip.engines.llamacpp`): the option
    measures what the rule costs apart from the engine. It compresses after the whole prefill (every layer's
    scores are needed), for methods that score entries and keep a uniform top-k (not wrappers, quantizers, layer
    budgets or ``ratio="auto"``).
    """

    stage: ClassVar[str] = "kv"
    window: ClassVar[int] = 0  # prefill queries a method needs (the last `window`)
    needs_received: ClassVar[bool] = False  # attention received from every prefill query (H2O)
    whole_model: ClassVar[bool] = False  # compress after the whole prefill (not layer by layer)
    decode_window: ClassVar[int] = 0  # recent decoding queries kept for compression during generation
    chunkable: ClassVar[bool] = False  # can compress between the chunks of a chunked prefill
    bounds = {"chunk_size": (1, None)}
    choices = {"positions": (PER_HEAD, SHARED)}

    compress_sliding: bool = False
    chunk_size: int | None = None
    positions: str = PER_HEAD

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_chunks()
        self.check_positions()

    def check_positions(self) -> None:
        """Refuse ``positions="shared"`` on a method whose selection is not one uniform top-k of its scores."""
        if self.positions != SHARED:
            return
        why = shared_refusal(self)
        if why:
            raise TokenzipError(f"kv.{self.name} cannot keep shared positions ({why}); methods that can: "
                                f"{', '.join(shared_methods())}")

    def check_chunks(self, chunk_size: int | None = None) -> None:
        """Refuse a chunk size (``chunk_size``, else the method's own) on a method that cannot compress between
        prefill chunks."""
        size = chunk_size if chunk_size is not None else self.chunk_size
        if size is not None and not self.supports_chunks():
            names = kv_methods_where(lambda method: method.supports_chunks())
            raise TokenzipError(f"kv.{self.name} cannot compress while prefilling in chunks (chunk_size={size}); "
                                f"methods that can: {', '.join(names)}")

    # --- what subclasses define -------------------------------------------------------------
    def score(self, ctx: LayerContext) -> torch.Tensor:
        """Importance of each cached token, ``(B, H_kv, N)``; higher is kept first."""
        raise NotImplementedError(f"{type(self).__name__} defines neither score() nor compress_layer()")

    def query_window(self) -> int:
        """How many of the last prefill queries this method needs captured."""
        return self.window

    def wants_received(self) -> bool:
        """Whether this method needs the attention every key received during prefill."""
        return self.needs_received

    def needs_whole_model(self) -> bool:
        """Whether this method compresses after the whole prefill (all layers at once) instead of layer by layer."""
        return self.whole_model or self.positions == SHARED

    def prepare(self, replay: ReplayContext, contexts: list[LayerContext]) -> None:
        """Hook for methods that need extra model passes before scoring (KVzip uses ``replay.replay``)."""

    def on_decode(self, step: DecodeContext) -> None:
        """Hook called after each decoding step's attention in a target layer (the ``decoding`` wrapper)."""

    def acts_on_decode(self) -> bool:
        """Whether this method defines :meth:`on_decode` (the runtime builds no decode context for the others)."""
        return type(self).on_decode is not KVMethod.on_decode

    def supports_chunks(self) -> bool:
        """Whether this method can compress between the chunks of a chunked prefill."""
        return self.chunkable

    def carry(self, ctx: LayerContext) -> torch.Tensor | None:
        """Per-entry state ``(B, H_kv, N)`` to carry to the next chunk of a chunked prefill (H2O's accumulated
        attention, KVzip's running maximum); the kept entries' values come back as ``ctx.carried``."""
        return None

    # --- shared machinery ----------------------------------------------------------------------
    def keep_counts(self, ctx: LayerContext) -> torch.Tensor:
        """Entries kept per head in each batch row: ``kept(real length)``, ``(B,)``; in a chunked prefill
        ``kept(tokens seen so far)``, at most the real entries held."""
        counts = [min(self.kept(int(seen)), int(n)) for seen, n in zip(ctx.seen_lengths(), ctx.real_lengths())]
        return torch.tensor(counts, device=ctx.keys.device)

    def own_queries(self, ctx: LayerContext) -> LayerContext:
        """``ctx`` with only the last ``query_window()`` captured queries: a prefill shared with a method that needs
        more (every query, for Compactor) must not widen another method's observation window."""
        w = self.query_window()
        if ctx.queries is None or not 0 < w < ctx.queries.shape[2]:
            return ctx
        return dataclasses.replace(ctx, queries=ctx.queries[:, :, -w:])

    def masked_scores(self, ctx: LayerContext) -> torch.Tensor:
        scores = self.score(self.own_queries(ctx)).float().expand(*ctx.keys.shape[:3])
        valid = ctx.valid_per_head()
        return scores if valid is None else scores.masked_fill(~valid, float("-inf"))

    def select(self, ctx: LayerContext, scores: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices and validity of the kept entries; wrappers (AdaKV) override this."""
        return keep_topk(scores, keep)

    def compress_layer(self, ctx: LayerContext) -> LayerResult:
        """Score, select the top ``kept(N)`` per head, gather."""
        keep = self.keep_counts(ctx)
        indices, valid = self.select(ctx, self.masked_scores(ctx), keep)
        return LayerResult(gather_tokens(ctx.keys, indices), gather_tokens(ctx.values, indices), valid,
                           indices=indices)

    def compress_layers(self, contexts: list[LayerContext]) -> list[LayerResult]:
        """What the runtime calls on every layer at once: with ``positions="shared"`` one selection for all
        (:meth:`compress_shared`), else the method's own :meth:`compress_model`."""
        if self.positions == SHARED:
            return self.compress_shared(contexts)
        return self.compress_model(contexts)

    def compress_model(self, contexts: list[LayerContext]) -> list[LayerResult]:
        """Compress every layer; methods allocating budgets across layers override this."""
        return [self.compress_layer(ctx) for ctx in contexts]

    def select_shared(self, contexts: list[LayerContext], keep: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions="shared"``: the positions kept in every layer and head, ``indices`` and ``valid`` ``(B, K)``
        (:func:`tokenzip.ops.topk.keep_shared`); ``keep``: the entries kept per row, when already counted
        (:meth:`keep_counts` of the first layer)."""
        if len({ctx.n_tokens for ctx in contexts}) > 1:
            raise TokenzipError(f"{self.name}: positions='shared' needs layers that hold the same entries; these hold "
                                f"{sorted({ctx.n_tokens for ctx in contexts})} (sliding-window layers hold fewer: "
                                "leave compress_sliding off)")
        keep = self.keep_counts(contexts[0]) if keep is None else keep
        return keep_shared([self.masked_scores(ctx) for ctx in contexts], keep)

    def compress_shared(self, contexts: list[LayerContext]) -> list[LayerResult]:
        """``positions="shared"``: the same kept positions in every layer and head (see the class docstring)."""
        indices, valid = self.select_shared(contexts)
        results = []
        for ctx in contexts:
            heads = ctx.keys.shape[1]
            idx, kept = indices[:, None].expand(-1, heads, -1), valid[:, None].expand(-1, heads, -1)
            results.append(LayerResult(gather_tokens(ctx.keys, idx), gather_tokens(ctx.values, idx), kept,
                                       indices=idx))
        return results

    def is_noop(self, n_tokens: int) -> bool:
        """True when nothing would be removed from a context of ``n_tokens`` (ratio 0, budget >= N)."""
        if self.budget is not None and self.budget >= n_tokens:
            warnings.warn(
                f"{self.name}: budget {self.budget} >= context length {n_tokens}: the cache is left as it is",
                stacklevel=3,
            )
            return True
        return self.kept(n_tokens) >= n_tokens and not self.changes_storage()

    def changes_storage(self) -> bool:
        """True for methods that change how entries are stored even when none are removed (quantization)."""
        return False


class Wrapping:
    """Mixed into a kv method that wraps another one (:meth:`wrapped`): the captures and extra passes it needs
    before scoring, whether it can compress between prefill chunks and what it carries between them come from
    the wrapped method. Without one (``wrapped()`` None, or not built yet) the method's own are used."""

    def wrapped(self) -> KVMethod | None:
        """The wrapped method, or None."""
        raise NotImplementedError

    def _inner(self) -> KVMethod | None:
        inner = self.wrapped()
        return inner if isinstance(inner, KVMethod) else None

    def supports_chunks(self) -> bool:
        inner = self._inner()
        return super().supports_chunks() and (inner is None or inner.supports_chunks())

    def carry(self, ctx: LayerContext) -> torch.Tensor | None:
        inner = self._inner()
        return super().carry(ctx) if inner is None else inner.carry(ctx)

    def query_window(self) -> int:
        inner = self._inner()
        return super().query_window() if inner is None else inner.query_window()

    def wants_received(self) -> bool:
        inner = self._inner()
        return super().wants_received() if inner is None else inner.wants_received()

    def needs_whole_model(self) -> bool:
        inner = self._inner()
        return super().needs_whole_model() if inner is None else inner.needs_whole_model()

    def prepare(self, replay: ReplayContext, contexts: list[LayerContext]) -> None:
        inner = self._inner()
        if inner is None:
            super().prepare(replay, contexts)
        else:
            inner.prepare(replay, contexts)


@dataclass
class WrapperMethod(Wrapping, KVMethod):
    """A method that wraps another one (``base``: a method name, built with the wrapper's ratio/budget, or
    a method object) and changes how its scores are used."""

    base: Any = "snapkv"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.base = build_base(self.base, self.ratio, self.budget, self.compress_sliding)
        self.check_chunks()

    def wrapped(self) -> KVMethod | None:
        return self.base


def shared_refusal(method: KVMethod) -> str | None:
    """Why ``method`` cannot keep shared positions (None when it can): its selection must be one uniform top-k of
    the scores :meth:`KVMethod.score` gives."""
    cls = type(method)
    if isinstance(method, Wrapping):
        return "it wraps another method's selection or storage"
    if method.changes_storage():
        return "it changes how entries are stored"
    if cls.keep_counts is not KVMethod.keep_counts or cls.select is not KVMethod.select:
        return "it chooses its own budgets per layer or head"
    if getattr(method, "auto", False):
        return "ratio='auto' chooses a budget per layer"
    if method.acts_on_decode():
        return "it compresses while decoding"
    return None


def shared_methods() -> list[str]:
    """Names of the kv methods that accept ``positions="shared"``."""
    return kv_methods_where(lambda method: shared_refusal(method) is None)


def kv_methods_where(test: Callable[[KVMethod], bool]) -> list[str]:
    """Names of the registered kv methods whose default instance passes ``test`` (those that cannot be built with
    their defaults are left out; warnings while building them are not shown)."""
    names = []
    for row in methods(stage="kv"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                method = get_method(row["name"], stage="kv")
        except TokenzipError:
            continue
        if test(method):
            names.append(row["name"])
    return names


def build_base(base: Any, ratio: float, budget: int | None, compress_sliding: bool) -> KVMethod:
    """The wrapped method: a name (built with the wrapper's ratio or budget, whichever was set) or a method object."""
    if isinstance(base, KVMethod):
        return base
    size: dict[str, Any] = {"budget": budget} if budget is not None else {"ratio": ratio}
    return get_method(str(base), stage="kv", compress_sliding=compress_sliding, **size)


def same_method(a: KVMethod | None, b: KVMethod | None) -> bool:
    """The same method and parameters, whatever the chunk size."""
    if a is None or b is None:
        return a is b
    strip = lambda m: {k: v for k, v in m.params().items() if k != "chunk_size"}  # noqa: E731
    return type(a) is type(b) and strip(a) == strip(b)
