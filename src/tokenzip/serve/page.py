"""The page at ``GET /``: paste a text and a question, pick a pipeline, see what each stage kept.

It calls ``POST /v1/tokenzip/compress`` (:func:`explain`), which runs the prompt stage on the text
(question-aware) and the kv stage on what is left (query-agnostic, as the context cache does), and returns
the kept character spans and per-stage counts. Self-contained: no script or style from outside.
"""

from __future__ import annotations

import html as _html
import time
from importlib import resources
from typing import Any

from tokenzip.spec import PipelineSpec

PRESETS = ("prompt:extractive@0.5", "prompt:llmlingua@0.5", "kv:kvzip@0.5", "kv:snapkv@0.5",
           "prompt:extractive@0.5 | kv:kvzip@0.5", "none")


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


def explain(model: Any, tok: Any, text: str, question: str | None, spec: PipelineSpec) -> dict[str, Any]:
    """Run the spec's prompt and kv stages on ``text``; report kept spans and counts (model thread)."""
    import tokenzip as tz

    stages: list[dict[str, Any]] = []
    kept_spans = [[0, len(text)]]
    after_prompt = text
    pm = spec.get("prompt")
    if pm is not None:
        r = tz.prompt.compress(text, ratio=pm.ratio if pm.budget is None else None, budget=pm.budget,
                               question=question, method=pm.method, scorer=(model, tok), **pm.kwargs)
        kept_spans = _merge([(s.start, s.end) for s in r.kept_spans])  # in original order (methods may reorder)
        after_prompt = r.text
        stages.append({"stage": "prompt", "method": str(pm), "tokens_before": r.tokens_before,
                       "tokens_after": r.tokens_after, "ratio": r.ratio, "seconds": r.seconds, "notes": r.notes})
    km = spec.get("kv")
    if km is not None:
        from tokenzip.kv.answer import prefill

        start = time.perf_counter()
        method = km.build()
        pre = prefill(model, tok, after_prompt, [method])
        comp = pre.compress(method)
        stages.append({"stage": "kv", "method": str(km), "entries_before": comp.counts.get("entries_before", 0),
                       "entries_after": comp.counts.get("entries_after", 0), "ratio": comp.achieved_ratio,
                       "bytes_before": pre.bytes, "bytes_after": comp.bytes, "tokens": pre.n_tokens,
                       "seconds": time.perf_counter() - start})
    return {"spec": str(spec), "text": text, "compressed_text": after_prompt, "kept_spans": kept_spans,
            "stages": stages}
