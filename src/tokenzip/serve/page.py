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

import contextlib
import html as _html
from importlib import resources
from typing import Any

import torch

from tokenzip.kv.base import target_layers
from tokenzip.kv.cache import layer_at, layer_entries
from tokenzip.ops.kept import kept_entries
from tokenzip.pipeline import Pipeline, StageRecord
from tokenzip.serve.generate import Detokenizer
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


def prompt_stage(model: Any, tok: Any, text: str, question: str | None, pipe: Pipeline
                 ) -> tuple[str, list[list[int]], list[StageRecord], list[str]]:
    """The pipeline's prompt stage on ``text`` (:meth:`~tokenzip.pipeline.Pipeline.compress_prompt`): the text left,
    its kept character spans (in the original), the stage's record, the method's notes."""
    result, record = pipe.compress_prompt(model, tok, text, question)
    if result is None or record is None:
        return text, [[0, len(text)]], [], []
    spans = _merge([(s.start, s.end) for s in result.kept_spans])  # original order (methods may reorder)
    return result.text, spans, [record], list(result.notes)


def explain_prompt(model: Any, tok: Any, req: CompressRequest, spec: PipelineSpec) -> dict[str, Any]:
    """The prompt stage only (proxy mode: the model that answers is upstream)."""
    text, spans, records, notes = prompt_stage(model, tok, req.text, req.question, Pipeline(spec))
    return {"spec": str(spec), "text": req.text, "compressed_text": text, "kept_spans": spans,
            "stages": [r.to_dict() for r in records], "kv": None, "answers": None,
            "notes": notes + ["proxy mode: the upstream server owns the model, so the page shows the prompt stage "
                              "only"]}


def explain(backend: Any, req: CompressRequest, spec: PipelineSpec) -> dict[str, Any]:
    """What each stage of ``spec`` keeps of ``req.text``, and the answers to ``req.question`` (model thread): the
    stages composed by :class:`~tokenzip.pipeline.Pipeline`'s steps, as the server composes a request's context."""
    model, tok = backend.model, backend.tok
    pipe = Pipeline(spec)
    text, spans, records, notes = prompt_stage(model, tok, req.text, req.question, pipe)
    out: dict[str, Any] = {"spec": str(spec), "text": req.text, "compressed_text": text, "kept_spans": spans,
                           "stages": [], "kv": None, "answers": None, "notes": notes}
    context, question = _context_and_question(backend, text, req.question)
    if pipe.method("kv") is not None or pipe.method("layers") is not None or req.question:
        pre, compressed, model_records = pipe.compress_context(model, tok, _tensor(backend, _ids(backend, context)))
        records += model_records
        if pipe.method("kv") is not None:
            out["kv"] = kv_heat_map(backend, context, pre, compressed)
            if out["kv"] is None:
                notes.append(f"no kv heat map: with {spec.without('prompt')} no compressed layer held every token's "
                             "entry before the kv stage (entries leave during the prefill with a chunk_size or a "
                             "layers method), so there is nothing to compare the kept entries with")
        if req.question:
            q_ids = _ids(backend, question, first=False)
            answer = _answer(backend, compressed, q_ids, req.max_tokens)
            whole = answer
            if spec:
                whole_ids = _ids(backend, _context_and_question(backend, req.text, req.question)[0])
                _, full, _ = Pipeline(PipelineSpec()).compress_context(model, tok, _tensor(backend, whole_ids))
                whole = _answer(backend, full, q_ids, req.max_tokens)
            out["answers"] = {"prompt": question, "compressed": answer, "uncompressed": whole}
    out["stages"] = [r.to_dict() for r in records]
    return out


def kv_heat_map(backend: Any, context: str, pre: Any, compressed: Any) -> dict[str, Any] | None:
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
    enc = backend.tok(context, add_special_tokens=not backend.templated, return_offsets_mapping=True)
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


def _context_and_question(backend: Any, text: str, question: str | None) -> tuple[str, str]:
    """How the server reads a document and a question: the chat template (instruct models), else completion style."""
    if not question:
        return text, ""
    if backend.templated:
        return chat_prompt([{"role": "user", "content": f"{text.rstrip()}\n\n{question}"}], backend.tok).render()
    return f"{text.rstrip()}\n\n", f"Question: {question}\nAnswer:"


def _ids(backend: Any, text: str, first: bool = True) -> list[int]:
    return backend.engine.tokenize(text, first and not backend.templated)


def _tensor(backend: Any, ids: list[int]) -> torch.Tensor:
    return torch.tensor([ids], device=backend.engine.device)


def _answer(backend: Any, compressed: Any, question_ids: list[int], max_tokens: int) -> str:
    """The greedy answer after a compressed context (:meth:`tokenzip.engines.torch.TorchEngine.generate`, on the model
    thread between the scheduler's steps), cut as the server cuts a chat answer."""
    stops = [] if backend.templated else _ANSWER_STOPS  # an instruct model ends its turn; a base model goes on
    detok = Detokenizer(backend.tok, stops, TURN_MARKERS)
    with contextlib.closing(backend.engine.generate(backend.engine.hold(compressed), question_ids, max_tokens)) as gen:
        for token in gen:
            if token in backend.eos:
                break
            detok.push(token)
            if detok.stopped:
                break
    detok.flush()
    return detok.text.strip()
