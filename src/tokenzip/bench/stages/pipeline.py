"""The pipeline stage: each spec (``prompt:extractive@0.5 | kv:kvzip@0.5``) on a sample, answered as in the kv stage.

Protocol (``Pipeline.answer``'s, query-agnostic): the prompt method compresses the sample's context with the
sample's questions given (question-aware methods use them, as in the prompt stage); the shorter text is formatted
(:func:`~tokenzip.bench.prompting.format_sample`) and prefilled with the layers method pruning inside the model;
the kv method compresses the cache without the questions; each question is then answered after it, positions
continuing after the prefilled text, the cache restored between questions. ``--query-aware``: one run per
question with the question in the prefill (``Pipeline.answer(query_aware=True)``). The uncompressed row
(``none``) is the empty pipeline through the same code.

Work that cannot change a result is shared within a sample, and charged to every row as if it had run alone:
the prompt scorer's results are kept for the sample (every ratio of a prompt method scores the same sentences),
and pipelines with the same prompt and layers methods share one prefill with captures for each kv method (as the
kv stage's shared prefill; KVzip's extra pass is shared between ratios through the prefill's memo). A kv method
that compresses while prefilling (``chunk_size``) prefills on its own.

Each row carries the run's :class:`~tokenzip.pipeline.PipelineReport` (``pipeline``: its ``to_dict()``) and
``bytes_by_stage``: the bytes of the dense cache of the original context, then what is held after each stage (after
the prompt stage: the dense cache of the shorter text). ``achieved_ratio`` is the fraction of the dense cache's
bytes removed (``1 - 1 / kv_compression``); ``ratio`` is 0 (each stage's ratio is in the spec).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.bench.kinds.base import ANSWERS, get_kind
from tokenzip.bench.measure import PeakMemory, synchronize
from tokenzip.bench.prompting import format_sample
from tokenzip.bench.stages import measurement
from tokenzip.errors import TokenzipError
from tokenzip.kv.answer import answer_from
from tokenzip.models.cache_layers import dense_cache_bytes
from tokenzip.pipeline import Pipeline, PipelineReport, pipeline
from tokenzip.prompt.scorer import CausalScorer


@dataclass
class SharedScorer(CausalScorer):
    """The prompt scorer with its results kept (for one sample): a sequence already scored is not scored again.

    Each result keeps its share of the seconds of the forward pass that computed it (by tokens); a call that
    reuses it adds that share to ``charged``, so a prompt method is timed as if it had scored alone.
    """

    memo: dict[tuple, tuple[torch.Tensor, float]] = field(default_factory=dict, init=False, repr=False)
    charged: float = field(default=0.0, init=False)

    def surprisal(self, sequences: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[torch.Tensor]:
        keys = [(tuple(map(int, c)), tuple(map(int, t))) for c, t in sequences]
        missing = list(dict.fromkeys(k for k in keys if k not in self.memo))
        self.charged += sum(self.memo[k][1] for k in keys if k in self.memo)
        if missing:
            start = time.perf_counter()
            values = super().surprisal(missing)
            seconds = time.perf_counter() - start
            tokens = sum(len(c) + len(t) for c, t in missing) or 1
            for key, value in zip(missing, values):
                self.memo[key] = (value, seconds * (len(key[0]) + len(key[1])) / tokens)
        return [self.memo[k][0] for k in keys]


def bytes_by_stage(model: Any, report: PipelineReport) -> dict[str, int]:
    """KV bytes of the dense cache of the original context, then held after each stage of ``report``.

    The layers stage of a chunked prefill never held its cache (the kv method compressed it as it was read): its
    bytes are its entries at the dense cache's bytes per entry (every entry has the same size)."""
    out = {"dense": report.dense_bytes}
    for record in report.stages:
        if record.stage == "prompt":  # no cache yet: what a dense cache of the shorter text holds
            out["prompt"] = dense_cache_bytes(model, int(record.after))
        elif record.bytes_after is not None:
            out[record.stage] = int(record.bytes_after)
        elif record.entries_after is not None and report.dense_entries:
            out[record.stage] = round(record.entries_after * report.dense_bytes / report.dense_entries)
    return out


def _group_key(pipe: Pipeline) -> tuple[str, str, str]:
    """Pipelines with equal keys share the prompt stage's text and one prefill."""
    kv = pipe.method("kv")
    own = str(pipe.spec.get("kv")) if kv is not None and getattr(kv, "chunk_size", None) else ""
    return str(pipe.spec.get("prompt")), str(pipe.spec.get("layers")), own


def run(worker: Any, sample: Any, prompt: Any, pairs: list[tuple[str, float]]) -> Iterator[dict]:
    if get_kind(sample.kind).measures != ANSWERS:
        raise TokenzipError(f"task {sample.task} ({sample.kind}): pipelines are measured on question answering")
    scorer = SharedScorer(worker.model, worker.tokenizer)
    pipes = [(spec, ratio, pipeline(spec, prompt_scorer=scorer)) for spec, ratio in pairs]
    for _, _, pipe in pipes:  # a method this model cannot take: refused before any work on the sample
        pipe.check(worker.model)
    if worker.config.query_aware:
        yield from _query_aware(worker, sample, prompt, pipes)
        return
    groups: dict[tuple[str, str, str], list] = {}
    for entry in pipes:
        groups.setdefault(_group_key(entry[2]), []).append(entry)
    for group in groups.values():
        yield from _group(worker, sample, prompt, scorer, group)


def _group(worker: Any, sample: Any, prompt: Any, scorer: SharedScorer, group: list) -> Iterator[dict]:
    """Pipelines sharing their prompt and layers methods: one compressed text, one prefill, then each kv method."""
    model, tok = worker.model, worker.tokenizer
    lead = group[0][2]
    for _, _, pipe in group[1:]:  # the layers report is read from the method object that ran
        for stage in ("prompt", "layers"):
            if lead.method(stage) is not None:
                pipe.methods[stage] = lead.methods[stage]
    with PeakMemory(worker.device) as prefill_peak:
        scorer.charged = 0.0
        question = "\n".join(q.text for q in sample.questions)
        text, prompt_record = lead.compress_text(model, tok, sample.context, question)
        shorter = prompt
        if prompt_record is not None:
            shorter = format_sample(dataclasses.replace(sample, context=text), tok, worker.config.prompt_style)
            prompt_record = dataclasses.replace(  # counted on the formatted texts the model reads
                prompt_record, before=_tokens(tok, prompt.context), after=_tokens(tok, shorter.context),
                seconds=prompt_record.seconds + scorer.charged)
        capture = [p.method("kv") for _, _, p in group[1:] if p.method("kv") is not None]
        pre, layers_record = lead.prefill(model, tok, shorter.context, capture=capture)
        synchronize(worker.device)
    questions = [q + p for q, p in shorter.questions]
    max_new = worker.max_new_tokens(sample)
    for spec, ratio, pipe in group:
        with PeakMemory(worker.device) as compress_peak:
            compressed, kv_record = pipe.compress_cache(pre)
            synchronize(worker.device)
        records = [r for r in (prompt_record, layers_record, kv_record) if r is not None]
        report = pipe.report(model, tok, prompt.context, pre, compressed, records)
        with PeakMemory(worker.device) as decode_peak:
            outputs = [answer_from(model, tok, compressed, q, max_new) for q in questions]
            synchronize(worker.device)
        peaks = (prefill_peak, compress_peak, decode_peak)
        yield _row(model, spec, ratio, report, [text for text, _, _ in outputs], sum(n for _, n, _ in outputs),
                   sum(s for _, _, s in outputs), pre.n_tokens, None if pre.chunk_size else pre.bytes, peaks)
        del compressed


def _query_aware(worker: Any, sample: Any, prompt: Any, pipes: list) -> Iterator[dict]:
    """One run per question, the question in the prefill (``Pipeline.answer(query_aware=True)``; the report is the
    first question's)."""
    model, tok = worker.model, worker.tokenizer
    for spec, ratio, pipe in pipes:
        with PeakMemory(worker.device) as peak:
            result = pipe.answer(model, tok, prompt.context, [q + p for q, p in prompt.questions], query_aware=True,
                                 max_new_tokens=worker.max_new_tokens(sample))
            synchronize(worker.device)
        yield _row(model, spec, ratio, result.report, [a.text for a in result.answers],
                   sum(a.new_tokens for a in result.answers), sum(a.decode_seconds for a in result.answers),
                   None, None, (peak,))


def _row(model: Any, spec: str, ratio: float, report: PipelineReport, predictions: list[str], new_tokens: int,
         decode_seconds: float, tokens_prefilled: float | None, bytes_before: int | None,
         peaks: tuple[PeakMemory, ...]) -> dict[str, Any]:
    stage_seconds = sum(s.seconds for s in report.stages if s.stage != "layers")  # layers: inside the prefill
    cuda = [p.cuda for p in peaks if p.cuda is not None]
    row = measurement(
        spec, ratio, predictions=predictions, tokens_in=report.context_tokens, tokens_kept=tokens_prefilled,
        achieved_ratio=1.0 - report.bytes_held / report.dense_bytes if report.dense_bytes else 0.0,
        prefill_seconds=report.prefill_seconds, compress_seconds=stage_seconds, decode_seconds=decode_seconds,
        new_tokens=new_tokens, cache_bytes_before=bytes_before, cache_bytes=report.bytes_held,
        peak_rss_bytes=max(p.rss for p in peaks), peak_cuda_bytes=max(cuda) if cuda else None,
        rss_peak_scope=peaks[-1].scope)
    row["pipeline"] = report.to_dict()
    row["bytes_by_stage"] = bytes_by_stage(model, report)
    return row


def _tokens(tok: Any, text: str) -> int:
    return len(tok(text).input_ids)
