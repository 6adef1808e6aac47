"""``tz.prompt.compress``: shorten a text to a token budget before any model reads it.

Importing it is light: torch and transformers (the method base and the token counters) load on the first
compression.
"""

from __future__ import annotations

import ast
import time
from typing import Any

import numpy as np

from tokenzip.errors import TokenzipError, unknown_name
from tokenzip.method import Method, check_budget, check_ratio, get_method
from tokenzip.prompt.budget import fit_budget
from tokenzip.prompt.code import check_python, monotone_scores
from tokenzip.prompt.modes import MODES, build_pieces, check_json, compile_patterns
from tokenzip.prompt.result import PromptResult, Span


def compress(
    text: str,
    ratio: float | None = None,
    budget: int | None = None,
    question: str | None = None,
    method: str | Method = "llmlingua",
    scorer: Any = "gemma-3-270m",
    target_tokenizer: Any = None,
    keep: list[str] | tuple[str, ...] | str | None = None,
    mode: str = "text",
    protect: bool | None = None,
    **params: Any,
) -> PromptResult:
    """Compress ``text`` to ``budget`` tokens (or by ``ratio``, the fraction of tokens removed).

    ``method`` is a registered prompt method's name (``tokenzip methods --stage prompt``) or a prompt method object
    (``tz.get_method("extractive", ratio=0.5)``, as the kv stage takes one), whose ratio or budget and parameters
    then apply (give them to ``get_method``, not here); ``question`` is given to question-aware ones.
    ``scorer`` is the causal LM that scores tokens: a name or path for ``tz.load_model``, a ``(model, tokenizer)``
    pair, or a :class:`~tokenzip.prompt.scorer.CausalScorer`.
    Token counts (and the budget) are on ``target_tokenizer`` (a tokenizer, a model name or a
    tokenizer path), the scorer's tokenizer when None. ``keep`` holds regular expressions whose
    matches are never removed; ``protect`` (default: on, except in code mode) also keeps numbers,
    URLs and e-mail addresses. ``mode`` is ``text``, ``json`` (valid JSON out, keys intact),
    ``markdown`` (headings and code fences kept) or ``code`` (Python that still parses).
    Extra keyword arguments are the method's parameters.

    Deletions happen only at word boundaries (single grapheme clusters in scripts written without
    spaces; runs of more than 64 graphemes without a space are cut into 16-grapheme pieces), and the
    token count of the result is measured on the target tokenizer: it is within 2% (or 5 tokens) of the
    budget unless the protected content alone is larger or no unit fits at all (see ``notes``). When not one
    unit fits and nothing at all would be left (``extractive`` under a budget smaller than every sentence),
    it raises a :class:`TokenzipError` saying so: an empty text is never returned for a non-empty one.
    """
    started = time.perf_counter()
    if not isinstance(text, str):
        raise TokenzipError(f"text must be a string, got {type(text).__name__}")
    if mode not in MODES:
        raise unknown_name("mode", str(mode), MODES)
    if ratio is not None and budget is not None:
        raise TokenzipError("give either ratio (fraction of tokens removed) or budget (tokens kept), not both")
    if question is not None and not isinstance(question, str):
        raise TokenzipError(f"question must be a string, got {type(question).__name__}")
    patterns = compile_patterns(keep)
    if isinstance(method, Method):
        method_obj = _prompt_method(method, ratio, budget, params)
        ratio, budget = (0.0 if method.budget is not None else method.ratio), method.budget
    else:
        ratio = check_ratio(0.5 if ratio is None and budget is None else (ratio or 0.0))
        budget = check_budget(budget)
        method_obj = get_method(method, stage="prompt", ratio=ratio, budget=budget, **params)
    if mode == "json":
        check_json(text)
    if mode == "code":
        check_python(text)

    from tokenzip.prompt.counting import resolve_counter  # lazy: keeps tokenzip.prompt free of torch

    count = resolve_counter(target_tokenizer, scorer)
    n_before = count(text)
    target = budget if budget is not None else n_before - int(n_before * ratio)

    def unchanged(note: str) -> PromptResult:
        return PromptResult(text, n_before, n_before, 0.0, [Span(0, len(text), 0)] if text else [], target,
                            method_obj.name, mode, time.perf_counter() - started, [note])

    if not text.strip():
        return unchanged("empty text: returned unchanged")
    if target >= n_before:
        why = "ratio 0" if budget is None else f"budget {budget} >= the text's {n_before} tokens"
        return unchanged(f"nothing to remove ({why}): returned unchanged")

    from tokenzip.prompt.base import PromptJob  # lazy: keeps tokenzip.prompt free of torch

    pieces = build_pieces(text, mode, patterns, protect if protect is not None else mode != "code")
    job = PromptJob(text, pieces, target, n_before, count, question, mode, scorer)
    if question is None and method_obj.question_aware:
        job.notes.append(f"{method_obj.name} is question-aware but no question was given: scored without one")
    method_obj.prepare(job)
    priority = np.asarray(method_obj.priority(job), dtype=np.float64)
    if priority.shape != (pieces.n_units,):
        raise RuntimeError(f"{method_obj.name} returned {priority.shape} priorities for {pieces.n_units} units")
    parent = getattr(pieces, "parent", None)
    if parent is not None and len(parent) == pieces.n_units:
        priority = monotone_scores(priority, parent)
    fit = fit_budget(pieces, priority, target, count, method_obj.order(job), total_tokens=n_before)
    notes = job.notes
    if fit.tokens > target:
        notes.append(f"the protected and structural content alone is {fit.tokens} tokens, over the budget of "
                     f"{target}: nothing more can be removed (pass fewer keep patterns or protect=False)")
    elif pieces.n_units and not fit.kept_units.any():
        if not fit.text.strip():  # nothing at all would be left: an error, not an empty text (the contract)
            raise TokenzipError(nothing_fits_note(method_obj, mode, target, fit.text))
        notes.append(nothing_fits_note(method_obj, mode, target, fit.text))
    if mode == "code":
        ast.parse(fit.text)  # guaranteed by construction; a failure here is a bug, never silent
    elif mode == "json":
        check_json(fit.text)
    ratio_done = 1.0 - fit.tokens / n_before if n_before else 0.0
    spans = [Span(*s) for s in fit.spans]
    return PromptResult(fit.text, n_before, fit.tokens, ratio_done, spans, target, method_obj.name, mode,
                        time.perf_counter() - started, notes)


def _prompt_method(method: Method, ratio: float | None, budget: int | None, params: dict[str, Any]) -> Method:
    """A method object given to :func:`compress`: a prompt method carrying its own ratio or budget and parameters."""
    if method.stage != "prompt":
        raise TokenzipError(f"{method.stage}.{method.name} is not a prompt method; tz.prompt.compress takes a prompt "
                            f"method (tokenzip methods --stage prompt), e.g. tz.get_method('extractive', ratio=0.5)")
    given = [name for name, value in (("ratio", ratio), ("budget", budget)) if value is not None] + sorted(params)
    if given:
        raise TokenzipError(f"the method object carries its own ratio, budget and parameters; {', '.join(given)} "
                            f"given here too: pass them to tz.get_method('{method.name}', ...) instead")
    return method


def nothing_fits_note(method: Any, mode: str, target: int, text: str) -> str:
    """Why a compression kept none of the removable text: each of its units is larger than the budget (the message
    of the error when nothing at all would be left, else a note)."""
    unit = "statement" if mode == "code" else method.unit
    hint = " or a word-level method (llmlingua, selective_context, head)" if unit != "word" else ""
    if not text.strip():
        return (f"{method.name}: not one {unit} of the text fits in the budget of {target} tokens, so nothing would "
                f"be left: give a larger budget{hint}")
    return (f"not one {unit} of the text fits in the budget of {target} tokens, so none was kept and only the fixed "
            f"(protected, structural) content is left: give a larger budget{hint}")
