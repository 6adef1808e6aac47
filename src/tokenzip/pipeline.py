"""Pipelines: the stages composed, prompt -> layers -> kv, with each stage's share of the savings.

    pipe = tz.pipeline("prompt:extractive@0.5 | layers:fastv@0.3 | kv:kvzip@0.5")
    result = pipe.answer(model, tok, document, ["Who ...?", "When ...?"])
    print(result.report.table())

The text is compressed first (question-aware prompt methods get the questions), then prefilled with
the layers method pruning hidden states inside the model and the kv method's captures attached;
the kv method compresses the cache after the prefill (query-agnostic: once for every question) or,
with ``query_aware=True``, once per question with the question in the prefill. Layers and kv methods
share one validity state per model (its :class:`tokenzip.models.attachment.Attachment`), so their order of
declaration does not matter. Every result carries a :class:`PipelineReport`: what each stage took in,
gave out, cost in seconds and left in memory, and the whole pipeline against the same model with no
compression on the original context.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.hooks import attach_method, compress
from tokenzip.kv.answer import CompressedCache, Prefill, answer_from, check_context, check_max_new_tokens, prefill
from tokenzip.kv.attached import check_kv_model
from tokenzip.method import Method
from tokenzip.models.cache_layers import dense_cache_bytes, dense_cache_entries, held_entries
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.models.inmodel import find_stack
from tokenzip.prompt import api as prompt_api
from tokenzip.prompt.result import PromptResult
from tokenzip.spec import PIPELINE_STAGES, PipelineSpec, from_methods, parse


@dataclass
class StageRecord:
    """One stage of one run: what went in and out, its seconds, and the KV cache held after it (None before
    any cache exists). The prompt and layers stages count tokens (the layers stage: tokens entering the
    first layer, and left after its last reduction), the kv stage cache entries (valid ones, summed over
    layers). Counts chain: a stage's ``before`` is the previous stage's ``after`` (tokens), and the kv
    stage's ``before`` the layers stage's ``entries_after``. With a chunked kv stage (``chunk_size``) the kv
    method compresses while the prefill reads the context, so the cache after the layers stage alone is never
    held: its entries are those the layers took in (counted chunk by chunk), its bytes None, and the layers
    stage's seconds exclude the kv method's compression between chunks (the kv stage's seconds)."""

    stage: str
    method: str
    unit: str
    before: float
    after: float
    seconds: float
    bytes_after: int | None = None  # None: that cache never existed (the layers stage of a chunked prefill)
    entries_after: float | None = None
    token_layers: float | None = None  # layers stage: tokens processed summed over the decoder's layers

    @property
    def removed(self) -> float:
        """Fraction of its input this stage removed."""
        return 1.0 - self.after / self.before if self.before else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The record's one dict form (JSON: the bench's rows, the server's ``usage.compression.stages``, the page)."""
        return {"stage": self.stage, "method": self.method, "unit": self.unit, "before": self.before,
                "after": self.after, "removed": self.removed, "seconds": self.seconds, "bytes_after": self.bytes_after,
                "entries_after": self.entries_after}


@dataclass
class PipelineReport:
    """Per-stage records and the whole pipeline against the uncompressed model on the original context.

    ``dense_entries``/``dense_bytes`` are what the uncompressed cache holds for the original context: every
    token on each global layer, the last ``window - 1`` on each sliding-window layer, at the model's dtype
    (the count transformers' dynamic cache stores; checked against a measured dense prefill in the tests).
    ``token_layers`` counts the tokens each decoder layer processed during the prefill, against
    ``dense_token_layers`` for the original context: the compute the prefill saved, in tokens. With
    ``baseline=True`` the dense prefill is also run and timed (``dense_prefill_seconds``).
    """

    spec: str
    stages: list[StageRecord]
    context_tokens: int
    entries_held: float
    bytes_held: int
    dense_entries: int
    dense_bytes: int
    prefill_seconds: float
    token_layers: float
    dense_token_layers: int
    dense_prefill_seconds: float | None = None

    @property
    def kv_compression(self) -> float:
        """Effective KV compression: dense bytes / bytes held (2.0 = half the memory)."""
        return self.dense_bytes / self.bytes_held if self.bytes_held else float("inf")

    @property
    def entries_compression(self) -> float:
        """Dense cache entries / entries held."""
        return self.dense_entries / self.entries_held if self.entries_held else float("inf")

    @property
    def compute_saved(self) -> float:
        """Fraction of the dense prefill's token-layers not computed."""
        return 1.0 - self.token_layers / self.dense_token_layers if self.dense_token_layers else 0.0

    @property
    def prefill_seconds_saved(self) -> float | None:
        if self.dense_prefill_seconds is None:
            return None
        return self.dense_prefill_seconds - self.prefill_seconds

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for JSON (bench rows, the server's usage block)."""
        return {
            "spec": self.spec, "context_tokens": self.context_tokens, "entries_held": self.entries_held,
            "bytes_held": self.bytes_held, "dense_entries": self.dense_entries, "dense_bytes": self.dense_bytes,
            "kv_compression": self.kv_compression, "entries_compression": self.entries_compression,
            "prefill_seconds": self.prefill_seconds, "dense_prefill_seconds": self.dense_prefill_seconds,
            "token_layers": self.token_layers, "dense_token_layers": self.dense_token_layers,
            "compute_saved": self.compute_saved,
            "stages": [s.to_dict() for s in self.stages],
        }

    def table(self) -> str:
        """A small text table: one line per stage, then the totals."""
        lines = [f"{'stage':<8}{'method':<34}{'in':>9}{'out':>9}{'removed':>9}{'seconds':>9}{'KV MiB':>9}"]
        for s in self.stages:
            mib = "" if s.bytes_after is None else f"{s.bytes_after / 2**20:.2f}"
            lines.append(f"{s.stage:<8}{s.method[:33]:<34}{s.before:>9.0f}{s.after:>9.0f}{s.removed:>9.1%}"
                         f"{s.seconds:>9.2f}{mib:>9}")
        lines.append(f"KV held: {self.bytes_held / 2**20:.2f} MiB of {self.dense_bytes / 2**20:.2f} MiB dense "
                     f"({self.kv_compression:.2f}x); prefill token-layers {self.token_layers:.0f} of "
                     f"{self.dense_token_layers} ({self.compute_saved:.1%} saved)")
        if self.dense_prefill_seconds is not None:
            lines.append(f"prefill {self.prefill_seconds:.2f} s vs {self.dense_prefill_seconds:.2f} s dense")
        return "\n".join(lines)


@dataclass
class PipelineAnswer:
    question: str
    text: str
    new_tokens: int
    decode_seconds: float


@dataclass
class PipelineResult:
    """Answers and the report of one :meth:`Pipeline.answer` (one report per question when query-aware)."""

    answers: list[PipelineAnswer]
    reports: list[PipelineReport]

    @property
    def report(self) -> PipelineReport:
        return self.reports[0]


@dataclass
class Pipeline:
    """At most one method per stage, applied in the order prompt -> layers -> kv."""

    spec: PipelineSpec
    prompt_scorer: Any = None  # the prompt stage's scorer: (model, tokenizer), a name, or None for the model
    methods: dict[str, Method] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for stage in PIPELINE_STAGES:
            method = self.spec.build(stage)
            if method is not None:
                self.methods[stage] = method

    def __str__(self) -> str:
        return str(self.spec)

    def method(self, stage: str) -> Method | None:
        return self.methods.get(stage)

    # --- checks before any work ----------------------------------------------------------------
    def check(self, model: Any) -> None:
        """Refuse a model the layers or kv method cannot hook, before any text is compressed."""
        if "kv" in self.methods or "layers" in self.methods:
            check_kv_model(model)
        if "kv" in self.methods:
            DecoderAdapter(model)
        layers = self.methods.get("layers")
        if layers is not None:
            stack = find_stack(model)
            layers.check_architecture(stack.architecture, stack.model_type)
            if stack.architecture not in ("decoder", "vlm"):
                raise TokenzipError(f"a pipeline answers with a decoder; {stack.model_type} is an {stack.architecture}")
            if getattr(self.methods.get("kv"), "chunk_size", None):  # each chunk is the layers method's input
                layers.check_chunked()
                if stack.architecture == "vlm":
                    raise TokenzipError(f"layers.{layers.name} on {stack.model_type} prunes a whole prefill (its image "
                                        "tokens); give the kv method no chunk_size")

    # --- the stages ----------------------------------------------------------------------------
    def compress_prompt(self, model: Any, tok: Any, context: str, question: str | None
                        ) -> tuple[PromptResult | None, StageRecord | None]:
        """The prompt stage: its whole result (kept spans, notes; None without a prompt method) and its record (token
        counts on the model's tokenizer)."""
        method = self.methods.get("prompt")
        if method is None:
            return None, None
        start = time.perf_counter()
        result = prompt_api.compress(context, question=question, method=method,
                                     scorer=self.prompt_scorer or (model, tok), target_tokenizer=tok)
        seconds = time.perf_counter() - start
        return result, StageRecord("prompt", str(self.spec.get("prompt")), "tokens", _dense_tokens(tok, context),
                                   _dense_tokens(tok, result.text), seconds)

    def compress_text(self, model: Any, tok: Any, context: str, question: str | None) -> tuple[str, StageRecord | None]:
        """The prompt stage: the compressed context and its record (see :meth:`compress_prompt`)."""
        result, record = self.compress_prompt(model, tok, context, question)
        return (context if result is None else result.text), record

    def prefill(self, model: Any, tok: Any, context: str | torch.Tensor, capture: Sequence[Method] = ()
                ) -> tuple[Prefill, StageRecord | None]:
        """Prefill with the layers method pruning inside the model (if any) and the kv method's captures, plus
        those of the kv methods in ``capture`` (one prefill then serves pipelines that differ in their kv method)."""
        layers = self.methods.get("layers")
        kv = self.methods.get("kv")
        with attach_method(model, layers) if layers is not None else contextlib.nullcontext() as runtime:
            pre = prefill(model, tok, context, ([kv] if kv is not None else []) + list(capture))
        if layers is None:
            return pre, None
        report = runtime.report
        kept = report.kept[0] if report else pre.n_tokens
        token_layers = float(sum(report.tokens_per_layer)) if report and report.tokens_per_layer else None
        seconds, held = pre.seconds, _held(pre.cache, pre.masks)
        held_bytes: int | None = pre.bytes
        if pre.entered is not None:  # a chunked prefill: its cache was compressed by the kv method as it was read
            seconds, held, held_bytes = pre.seconds - pre.compress_seconds, _entered(pre), None
        return pre, StageRecord("layers", str(self.spec.get("layers")), "tokens", pre.n_tokens, kept, seconds,
                                held_bytes, held, token_layers)

    def compress_cache(self, pre: Prefill) -> tuple[CompressedCache, StageRecord | None]:
        kv = self.methods.get("kv")
        compressed = pre.compress(kv)
        if kv is None:
            return compressed, None
        after = held_entries(compressed.cache, compressed.masks.valid)
        before = _held(pre.cache, pre.masks) if pre.entered is None else _entered(pre)
        return compressed, StageRecord("kv", str(self.spec.get("kv")), "entries", before, after,
                                       compressed.compress_seconds, compressed.bytes, after)

    def compress_context(self, model: Any, tok: Any, context: str | torch.Tensor
                         ) -> tuple[Prefill, CompressedCache, list[StageRecord]]:
        """The model's stages on a context (text, or token ids as given): the prefill with the layers method pruning
        inside the model, then the kv method's compression. Returns the prefill, the compressed cache and the layers
        and kv stages' records (those that ran). :meth:`run`, the server and its page all compose through here."""
        pre, layers_record = self.prefill(model, tok, context)
        compressed, kv_record = self.compress_cache(pre)
        return pre, compressed, [r for r in (layers_record, kv_record) if r is not None]

    # --- whole runs ----------------------------------------------------------------------------
    def run(self, model: Any, tok: Any, context: str, question: str | None = None,
            baseline: bool = False) -> tuple[CompressedCache, PipelineReport]:
        """Compress ``context`` through every stage: the compressed cache, ready to answer, and its report."""
        self.check(model)
        records: list[StageRecord] = []
        text, record = self.compress_text(model, tok, context, question)
        records += [record] if record else []
        pre, compressed, model_records = self.compress_context(model, tok, text)
        records += model_records
        return compressed, self.report(model, tok, context, pre, compressed, records, baseline)

    def answer(self, model: Any, tok: Any, context: str, questions: str | Sequence[str], query_aware: bool = False,
               max_new_tokens: int = 32, answer_prefix: str = "", baseline: bool = False) -> PipelineResult:
        """Answer each question about ``context`` through the pipeline.

        Query-agnostic (default): the prompt stage sees every question (joined), the cache is compressed
        once and answers them all. ``query_aware=True``: one run per question, with the question in the
        prefill before the kv compression (as :func:`tokenzip.kv.answer`).
        """
        questions = [questions] if isinstance(questions, str) else list(questions)
        if not questions:
            raise TokenzipError("give at least one question")
        check_context(context)  # also when query-aware, where the question alone would make a prefill
        check_max_new_tokens(max_new_tokens)
        self.check(model)
        answers, reports = [], []
        if not query_aware:
            compressed, report = self.run(model, tok, context, "\n".join(questions), baseline)
            reports.append(report)
            for q in questions:
                text, n, seconds = answer_from(model, tok, compressed, q, max_new_tokens, answer_prefix)
                answers.append(PipelineAnswer(q, text, n, seconds))
            return PipelineResult(answers, reports)
        for q in questions:
            text, record = self.compress_text(model, tok, context, q)
            ids = torch.cat([_ids(tok, text, True, model), _ids(tok, q + answer_prefix, False, model)], dim=1)
            pre, compressed, model_records = self.compress_context(model, tok, ids[:, :-1])
            records = ([record] if record else []) + model_records
            reports.append(self.report(model, tok, context + q, pre, compressed, records, baseline))
            out, n, seconds = answer_from(model, tok, compressed, ids[:, -1:], max_new_tokens)
            answers.append(PipelineAnswer(q, out, n, seconds))
        return PipelineResult(answers, reports)

    @contextlib.contextmanager
    def attached(self, model: Any, tokenizer: Any = None) -> Iterator[Any]:
        """Hook the layers and kv methods into ``model`` (as ``tz.compress``) for ``model.generate``; pass the
        model's ``tokenizer`` for kv methods that tokenize an instruction (KVzip)."""
        hooked = [m for s, m in self.methods.items() if s != "prompt"]
        if not hooked:
            yield model
            return
        with compress(model, *hooked, tokenizer=tokenizer):
            yield model

    def generate(self, model: Any, tok: Any, text: str, question: str | None = None, max_new_tokens: int = 32
                 ) -> tuple[str, PipelineReport]:
        """Compress ``text`` (question-aware prompt methods get ``question``), append ``question``, and continue
        greedily from the compressed cache (the kv method sees the question). Returns the new text and the report.
        For ``model.generate`` with its own options, hook the model with :meth:`attached` instead."""
        result = self.answer(model, tok, text, [question or ""], query_aware=True, max_new_tokens=max_new_tokens)
        return result.answers[0].text, result.report

    def report(self, model: Any, tok: Any, original: str, pre: Prefill, compressed: CompressedCache,
               records: list[StageRecord], baseline: bool = False) -> PipelineReport:
        """The report of one run from its parts: ``original`` is the uncompressed context (the dense reference),
        ``pre`` the prefill (after the layers stage), ``compressed`` the cache after the kv stage, ``records``
        the stages' records in order."""
        dense = _dense_tokens(tok, original)
        held = held_entries(compressed.cache, compressed.masks.valid)
        dense_seconds = None
        if baseline:
            dense_seconds = prefill(model, tok, original).seconds
        num_layers = _num_layers(model)
        layers = next((r.token_layers for r in records if r.stage == "layers"), None)
        return PipelineReport(
            spec=str(self.spec), stages=records, context_tokens=dense, entries_held=held,
            bytes_held=compressed.bytes, dense_entries=dense_cache_entries(model, dense),
            dense_bytes=dense_cache_bytes(model, dense), prefill_seconds=pre.seconds,
            token_layers=layers if layers is not None else float(pre.n_tokens * num_layers),
            dense_token_layers=dense * num_layers,
            dense_prefill_seconds=dense_seconds)


def pipeline(spec: str | PipelineSpec | None = None, *, prompt: Method | str | None = None,
             layers: Method | str | None = None, kv: Method | str | None = None,
             prompt_scorer: Any = None) -> Pipeline:
    """A pipeline from a spec text (``"prompt:extractive@0.5 | layers:fastv@0.3 | kv:kvzip@0.5"``, grammar in
    :mod:`tokenzip.spec`) or from one method per stage (objects from ``tz.get_method`` or spec items).

    Two eviction methods in one stage, or a method given for the wrong stage, are refused here, before any
    work; combine eviction with quantization through ``kivi:evict=...``, and scores through a wrapper's
    ``base=``.
    """
    if spec is not None and (prompt is not None or layers is not None or kv is not None):
        raise TokenzipError("give either a spec text or prompt=/layers=/kv= methods, not both")
    parsed = parse(spec) if spec is not None else from_methods(prompt=prompt, layers=layers, kv=kv)
    built = Pipeline(parsed, prompt_scorer=prompt_scorer)
    for stage, method in (("prompt", prompt), ("layers", layers), ("kv", kv)):
        if isinstance(method, Method):  # the object itself: parameters no spec text holds (a tokenizer) stay
            built.methods[stage] = method
    return built


def _held(cache: Any, snapshot: Any) -> float:
    """Valid entries held by ``cache`` given a CacheMasks snapshot (or None: every stored entry is valid)."""
    return held_entries(cache, snapshot[0] if snapshot else {})


def _entered(pre: Prefill) -> float:
    """The entries a chunked prefill's layers took in, summed: what its cache would hold had the kv method evicted
    nothing (that cache never existed: the kv method compressed it chunk by chunk)."""
    return float(sum(pre.entered.values()))


def _ids(tok: Any, text: str, special: bool, model: Any) -> torch.Tensor:
    ids = tok(text, return_tensors="pt", add_special_tokens=special).input_ids
    return ids.to(next(model.parameters()).device)


def _dense_tokens(tok: Any, text: str) -> int:
    return int(tok(text, return_tensors="pt").input_ids.shape[1])


def _num_layers(model: Any) -> int:
    return DecoderAdapter(model).num_layers
