"""Audit tokenizers: efficiency on a corpus, exact round trip, and token premiums across languages.

For each tokenizer: bytes and characters per token, fertility, vocabulary use and round-trip
exactness on a corpus (the held-out part of the default corpus unless given); the same per
language on parallel text with each language's token premium against English (Petrov et al.,
2023, arXiv 2305.15425); and, for BPE tokenizers, bytes per token at smaller vocabulary sizes
obtained by cutting the merge list (see ``nested.py``). See ``metrics.py`` for the definitions.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from tokenzip.errors import TokenzipError
from tokenzip.tokenizers.bpe import is_nested
from tokenzip.tokenizers.load import LoadedTokenizer, load_tokenizer
from tokenzip.tokenizers.metrics import measure, premium
from tokenzip.tokenizers.nested import bytes_per_token_curve
from tokenzip.tokenizers.parallel import ParallelText

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """Rows for tables and plots: one per tokenizer on the corpus, one per (tokenizer, language)."""

    corpus_rows: list[dict[str, Any]] = field(default_factory=list)
    language_rows: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    parallel_counts: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def premium_table(self) -> list[dict[str, Any]]:
        """One row per language, one premium column per tokenizer (plus the byte premium)."""
        names = [r["tokenizer"] for r in self.corpus_rows]
        by_lang: dict[str, dict[str, Any]] = {}
        for r in self.language_rows:
            row = by_lang.setdefault(r["language"], {"language": r["language"], "byte premium": r["byte premium"]})
            row[r["tokenizer"]] = r["premium"]
        rows = list(by_lang.values())
        if names:
            rows.sort(key=lambda r: (r["language"] != self.meta.get("reference"), -_nan_low(r.get(names[0]))))
        return rows


    def premium_summary(self, unknown_threshold: float = 0.01) -> list[dict[str, Any]]:
        """Per tokenizer: median and largest premium over the non-reference languages, and the languages
        where more than ``unknown_threshold`` of the tokens are the unknown token (premiums there are
        meaningless: a whole word became one [UNK])."""
        out = []
        reference = self.meta.get("reference")
        for name in self.meta.get("tokenizers", []):
            rows = [r for r in self.language_rows if r["tokenizer"] == name and r["language"] != reference]
            if not rows:
                continue
            values = sorted(r["premium"] for r in rows)
            worst = max(rows, key=lambda r: r["premium"])
            unknown = [r["language"] for r in rows if (r.get("unknown share") or 0) > unknown_threshold]
            out.append({"tokenizer": name, "languages": len(rows), "median premium": statistics.median(values),
                        "max premium": worst["premium"], "max at": worst["language"],
                        "languages with >1% unknown tokens": ", ".join(unknown) or "none"})
        return out


def _nan_low(x: Any) -> float:
    return -math.inf if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def audit(
    tokenizers: Sequence[Any],
    corpus: Sequence[str] | None = None,
    parallel: ParallelText | None = None,
    curves: bool = True,
    curve_points: int = 8,
    progress: bool = True,
) -> AuditResult:
    """Audit each tokenizer (anything ``load_tokenizer`` accepts) on ``corpus`` and ``parallel`` text."""
    if not tokenizers:
        raise TokenzipError("give at least one tokenizer to audit")
    loaded: list[LoadedTokenizer] = [load_tokenizer(t) for t in tokenizers]
    names = [t.name for t in loaded]
    if len(set(names)) != len(names):
        for i, t in enumerate(loaded):
            t.name = f"{t.name}#{i + 1}"
    result = AuditResult(meta={"tokenizers": [t.name for t in loaded]})
    if corpus is not None:
        corpus = [t for t in corpus if t]
        if not corpus:
            raise TokenzipError("the audit corpus is empty; give non-empty text files")
        result.meta["corpus_texts"] = len(corpus)
    if parallel is not None:
        result.parallel_counts = parallel.counts()
        result.meta.update(reference=parallel.reference, parallel_source=parallel.source,
                           parallel_strings=len(parallel), parallel_warnings=parallel.warnings,
                           parallel_domains=parallel.domains)
    for tok in tqdm(loaded, desc="auditing", unit="tokenizer", disable=not progress or len(loaded) < 2):
        row: dict[str, Any] = {"tokenizer": tok.name, "model": tok.model_type, "vocab": tok.vocab_size}
        if corpus is not None:
            row.update(measure(tok, corpus).row())
        result.corpus_rows.append(row)
        if parallel is not None:
            result.language_rows += _languages(tok, parallel)
        if curves and corpus is not None and tok.fast is not None and tok.model_type == "BPE":
            if is_nested(tok.fast):
                result.curves[tok.name] = bytes_per_token_curve(tok.fast, corpus, points=curve_points,
                                                                progress=progress)
            else:
                result.meta.setdefault("no_curve", {})[tok.name] = (
                    "its merge list is not ordered so that each merge uses earlier tokens (converted from "
                    "SentencePiece), so cutting it does not give a smaller tokenizer")
    return result


def _languages(tok: LoadedTokenizer, parallel: ParallelText) -> list[dict[str, Any]]:
    stats = {lang: measure(tok, parallel.texts[lang]) for lang in parallel.languages}
    ref = stats[parallel.reference]
    rows = []
    for lang, s in stats.items():
        rows.append({
            "tokenizer": tok.name, "language": lang, "strings": s.texts, "tokens": s.tokens,
            "bytes/token": s.bytes_per_token, "chars/token": s.chars_per_token, "fertility": s.fertility,
            "premium": premium(s.tokens, ref.tokens), "byte premium": premium(s.bytes, ref.bytes),
            "round trip": s.roundtrip_rate, "unknown share": s.unknown_share, "distinct ids": s.distinct_ids,
        })
    return rows
