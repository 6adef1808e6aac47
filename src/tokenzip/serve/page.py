"""The page at ``GET /``: paste a text and a question, pick a pipeline, see what each stage kept and what the model
answers from the compressed context beside the whole one.

It calls ``POST /v1/tokenzip/compress`` (:func:`explain`, on the model thread), which runs the pipeline the way
the server runs a request's context: the prompt stage on the text (question-aware; the kept character spans),
then the prefill (the layers method pruning inside the model) and the kv method (query-agnostic). For the kv
stage it reports, for every token the model read, the fraction of the compressed layers' KV heads that still
hold its entry (:func:`tokenzip.ops.kept.kept_entries`), shown as a heat map; and, given a question, the greedy
answer from the compressed context and from the uncompressed one. Self-contained: no script or style from
outside.
"""

from __future__ import annotations

import html as _html
import time
from importlib import resources
from typing import Any

import torch

from tokenzip.kv.base import target_layers
from tokenzip.kv.cache import layer_at, layer_entries
from tokenzip.models.decode_batch import DecodeBatch
from tokenzip.models.rows import Row, forward_rows
from tokenzip.ops.kept import kept_entries
from tokenzip.ops.sampling import SamplingParams
from tokenzip.pipeline import Pipeline
from tokenzip.serve.generate import Choice, Detokenizer
from tokenzip.serve.schemas import CompressRequest
from tokenzip.serve.split import TURN_MARKERS, chat_prompt
from tokenzip.spec import PipelineSpec

PRESETS = ("prompt:extractive@0.5", "prompt:llmlingua@0.5", "kv:kvzip@0.5", "kv:snapkv@0.5",
           "prompt:extractive@0.5 | kv:kvzip@0.5", "none")
_ANSWER_STOPS = ["\n\n", "\nQuestion:"]


def html(model: str, default_spec: str) -> str:
    """The page, with the model name and the server's default pipeline filled in."""
    page = resources.files("tokenzip.serve").joinpath("page.html").read_text(encoding="utf-8")
    options = "".join(f'<option value="{_html.escape(p)}">{_html.escape(p)}</option>' for p in PRESETS)
    return (page.replace("{{MODEL}}", _html.escape(model)).replace("{{OPTIONS}}", options)
            .replace("{{DEFAULT}}", _html.escape(default_spec)))


def _merge(spans: list[tuple[int, int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def prompt_stage(model: Any, tok: Any, text: str, question: str | None, spec: PipelineSpec
                 ) -> tuple[str, list[list[int]], list[dict[str, Any]]]:
    """The spec's prompt stage on ``text``: the text left, its kept character spans (in the original), the stage row."""
    import tokenzip as tz

    pm = spec.get("prompt")
    if pm is None:
        return text, [[0, len(text)]], []
    r = tz.prompt.compress(text, ratio=pm.ratio if pm.budget is None else None, budget=pm.budget,
                           question=question, method=pm.method, scorer=(model, tok), **pm.kwargs)
    row = {"stage": "prompt", "method": str(pm), "tokens_before": r.tokens_before, "tokens_after": r.tokens_after,
           "ratio": r.ratio, "seconds": r.seconds, "notes": r.notes}
    return r.text, _merge([(s.start, s.end) for s in r.kept_spans]), [row]  # original order (methods may reorder)


def explain_prompt(model: Any, tok: Any, req: CompressRequest, spec: PipelineSpec) -> dict[str, Any]:
    """The prompt stage only (proxy mode: the model that answers is upstream)."""
    text, spans, rows = prompt_stage(model, tok, req.text, req.question, spec)
    return {"spec": str(spec), "text": req.text, "compressed_text": text, "kept_spans": spans, "stages": rows,
            "kv": None, "answers": None, "notes": ["proxy mode: the upstream server owns the model, so the page "
                                                    "shows the prompt stage only"]}


def explain(engine: Any, req: CompressRequest, spec: PipelineSpec) -> dict[str, Any]:
    """What each stage of ``spec`` keeps of ``req.text``, and the answers to ``req.question`` (model thread)."""
    model, tok = engine.model, engine.tok
    text, spans, stages = prompt_stage(model, tok, req.text, req.question, spec)
    out: dict[str, Any] = {"spec": str(spec), "text": req.text, "compressed_text": text, "kept_spans": spans,
                           "stages": stages, "kv": None, "answers": None, "notes": []}
    context, question = _context_and_question(engine, text, req.question)
    pipe = Pipeline(spec.without("prompt"))
    if pipe.method("kv") is None and pipe.method("layers") is None and not req.question:
        return out
    ids = _ids(engine, context)
    start = time.perf_counter()
    pre, layers = pipe.prefill(model, tok, torch.tensor([ids], device=next(model.parameters()).device))
    if layers is not None:
        stages.append({"stage": "layers", "method": layers.method, "tokens_before": layers.before,
                       "tokens_after": layers.after, "seconds": layers.seconds})
    compressed = pre.compress(pipe.method("kv"))
    if pipe.method("kv") is not None:
        stages.append({"stage": "kv", "method": str(spec.get("kv")),
                       "entries_before": compressed.counts.get("entries_before", 0),
                       "entries_after": compressed.counts.get("entries_after", 0), "ratio": compressed.achieved_ratio,
                       "bytes_before": pre.bytes, "bytes_after": compressed.bytes, "tokens": pre.n_tokens,
                       "seconds": time.perf_counter() - start})
        out["kv"] = kv_heat_map(engine, context, pre, compressed)
        if out["kv"] is None:
            out["notes"].append(f"no kv heat map: with {spec.without('prompt')} no compressed layer held every "
                                "token's entry before the kv stage (entries leave during the prefill with a chunk_size "
                                "or a layers method), so there is nothing to compare the kept entries with")
    if req.question:
        q_ids = _ids(engine, question, first=False)
        answer = _answer(engine, compressed, q_ids, req.max_tokens)
        if spec:
            full = Pipeline(PipelineSpec()).prefill(model, tok, torch.tensor(
                [_ids(engine, _context_and_question(engine, req.text, req.question)[0])],
                device=next(model.parameters()).device))[0].compress(None)
            whole = _answer(engine, full, q_ids, req.max_tokens)
        else:
            whole = answer
        out["answers"] = {"prompt": question, "compressed": answer, "uncompressed": whole}
    return out


def kv_heat_map(engine: Any, context: str, pre: Any, compressed: Any) -> dict[str, Any] | None:
    """Per token of ``context``: the fraction of the compressed layers' KV heads that still hold its entry, over the
    compressed layers that held every token's entry before the kv stage (a layers method, or a kv method given a
    chunk_size, removes entries during the prefill: those layers are left out, and None when no layer is left)."""
    method = compressed.method
    n = pre.n_tokens
    targets = target_layers(pre.adapter, bool(method and method.compress_sliding))
    layers = [i for i in targets if layer_entries(layer_at(pre.cache, i))[0][0].shape[1] == n]
    if not layers:
        return None
    kept = torch.zeros(n)
    heads = 0
    changed = False
    for i in layers:
        original = layer_entries(layer_at(pre.cache, i))[0][0]  # (H, N, D), batch row 0
        stored = layer_entries(layer_at(compressed.cache, i))[0][0]
        valid = compressed.masks.valid.get(i)
        layer_kept, matched = kept_entries(original, stored, None if valid is None else valid[0])
        n_valid = stored.shape[1] if valid is None else valid[0].expand(stored.shape[0], -1).sum(-1)
        changed = changed or bool((matched < torch.as_tensor(n_valid)).any())
        kept += layer_kept.float().sum(0).cpu()
        heads += layer_kept.shape[0]
    fraction = (kept / max(1, heads)).tolist()
    enc = engine.tok(context, add_special_tokens=not engine.templated, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    tokens = [[int(a), int(b), round(f, 4)] for (a, b), f in zip(offsets, fraction)]
    notes = []
    if changed:
        notes.append(f"{method.name if method else 'this method'} stores entries it changed (merged or quantized): "
                     "only entries kept unchanged count as kept here")
    if len(layers) < len(targets):
        notes.append(f"layers {', '.join(str(i) for i in targets if i not in layers)} held fewer entries than tokens "
                     "before the kv stage (removed during the prefill) and are left out")
    note = "; ".join(notes) or None
    return {"text": context, "tokens": tokens, "layers": layers, "mean_kept": sum(fraction) / max(1, n), "note": note}


def _context_and_question(engine: Any, text: str, question: str | None) -> tuple[str, str]:
    """How the server reads a document and a question: the chat template (instruct models), else completion style."""
    if not question:
        return text, ""
    if engine.templated:
        return chat_prompt([{"role": "user", "content": f"{text.rstrip()}\n\n{question}"}], engine.tok).render()
    return f"{text.rstrip()}\n\n", f"Question: {question}\nAnswer:"


def _ids(engine: Any, text: str, first: bool = True) -> list[int]:
    return list(engine.tok(text, add_special_tokens=first and not engine.templated).input_ids)


def _answer(engine: Any, compressed: Any, question_ids: list[int], max_tokens: int) -> str:
    """The greedy answer after a compressed context (the model thread, between the scheduler's steps)."""
    stops = [] if engine.templated else _ANSWER_STOPS  # an instruct model ends its turn; a base model goes on
    choice = Choice.make(0, SamplingParams(temperature=0.0), Detokenizer(engine.tok, stops, TURN_MARKERS), 0, None)
    row = Row.after(compressed.cache, compressed.masks, compressed.seen)
    logits = forward_rows(engine.model, [row], [question_ids])[0]
    decoder = DecodeBatch(engine.model)  # decoding as the server decodes
    decoder.set_rows([row])
    for _ in range(max_tokens):
        token = choice.choose(logits)
        if token in engine.scheduler.eos:
            break
        choice.accept(token, logits)
        choice.piece(token)
        if choice.detok.stopped:
            break
        logits = decoder.step([token])[0]
    choice.finish_text()
    return choice.text.strip()
