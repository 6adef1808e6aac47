"""Train a tokenizer (BPE, Unigram or SuperBPE) and write a standard tokenizer.json with a report.

* ``bpe``: byte-level BPE (Sennrich et al., 2016, arXiv 1508.07909) with stock ``tokenizers``.
* ``unigram``: Unigram LM (Kudo, 2018, arXiv 1804.10959) with stock ``tokenizers``.
* ``superbpe``: SuperBPE (Liu et al., 2025, arXiv 2503.13423), see ``superbpe.py``.

The output loads in stock ``tokenizers`` (``Tokenizer.from_file``) and in transformers
(``PreTrainedTokenizerFast(tokenizer_file=...)``) with no tokenzip code. The report gives training
time, peak memory, bytes per token on held-out text and, for the BPE family, bytes per token at
every smaller vocabulary size from the same run (BPE vocabularies nest).
"""

from __future__ import annotations

import logging
import platform
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenzip.errors import TokenzipError, unknown_name
from tokenzip.table import format_table
from tokenzip.textio import out_dir
from tokenzip.tokenizers.bpe import SPECIAL_TOKENS, alphabet, train_bpe, train_unigram
from tokenzip.tokenizers.load import LoadedTokenizer
from tokenzip.tokenizers.metrics import measure
from tokenzip.tokenizers.nested import bytes_per_token_curve, default_sizes
from tokenzip.tokenizers.report import write_json
from tokenzip.tokenizers.superbpe import MAX_WORDS, train_superbpe

log = logging.getLogger(__name__)

ALGORITHMS = ("bpe", "unigram", "superbpe")


@dataclass
class Trained:
    """A trained tokenizer (a stock ``tokenizers.Tokenizer``) and how it was made."""

    tokenizer: Any
    algo: str
    vocab_size: int
    transition: int | None
    seconds: float
    peak_rss_mb: float
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def default_transition(vocab_size: int) -> int:
    """Half the vocabulary: between SuperBPE's best-compression point (t = 0.4 V) and its released
    tokenizer (t = 0.9 V), and where most of the gain already shows on this project's corpus
    (benchmarks/tokenizers.md)."""
    return vocab_size // 2


def check_arguments(algo: str, vocab_size: int, transition: int | None,
                    special_tokens: Sequence[str] = SPECIAL_TOKENS) -> tuple[int | None, list[str]]:
    """Validate the training arguments; returns the transition point to use and warnings."""
    if algo not in ALGORITHMS:
        raise unknown_name("tokenizer algorithm", algo, ALGORITHMS)
    minimum = len(alphabet()) + len(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TokenzipError(f"vocabulary size must be an integer, got {vocab_size!r}")
    if vocab_size < minimum:
        raise TokenzipError(
            f"a vocabulary of {vocab_size} is smaller than the alphabet: {len(alphabet())} byte tokens + "
            f"{len(special_tokens)} special token(s) = {minimum}; use --vocab {minimum} or more"
        )
    warnings: list[str] = []
    if algo != "superbpe":
        if transition is not None:
            raise TokenzipError(f"--transition is the SuperBPE transition point; it does not apply to {algo}")
        return None, warnings
    if transition is None:
        transition = default_transition(vocab_size)
        transition = max(transition, minimum)
    if transition > vocab_size:
        raise TokenzipError(
            f"the transition point ({transition}) is above the vocabulary size ({vocab_size}); it is the vocabulary "
            f"size at which superword merges start, so it must be at most {vocab_size}"
        )
    if transition < minimum:
        raise TokenzipError(f"the transition point ({transition}) is below the alphabet size ({minimum})")
    if transition == vocab_size:
        warnings.append("transition point equals the vocabulary size: no superword merges, this is plain BPE")
    return transition, warnings


def train_tokenizer(
    texts: Sequence[str],
    algo: str = "bpe",
    vocab_size: int = 32000,
    transition: int | None = None,
    max_words: int = MAX_WORDS,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    progress: bool = True,
    max_piece_types: int = 4_000_000,
) -> Trained:
    """Train a ``bpe``, ``unigram`` or ``superbpe`` tokenizer of ``vocab_size`` tokens on ``texts``."""
    transition, warnings = check_arguments(algo, vocab_size, transition, special_tokens)
    texts = [t for t in texts if t]
    if not any(t.strip() for t in texts):
        raise TokenzipError("the training corpus is empty; give non-empty UTF-8 text files")
    if max_words < 1:
        raise TokenzipError(f"max_words must be at least 1, got {max_words}")
    start = time.perf_counter()
    info: dict[str, Any] = {}
    if algo == "bpe":
        tok = train_bpe(texts, vocab_size, special_tokens, progress=progress)
    elif algo == "unigram":
        tok = train_unigram(texts, vocab_size, special_tokens, progress=progress)
    else:
        tok, info = train_superbpe(texts, vocab_size, transition, max_words=max_words, special_tokens=special_tokens,
                                   progress=progress, max_piece_types=max_piece_types)
    seconds = time.perf_counter() - start
    actual = tok.get_vocab_size(with_added_tokens=True)
    if actual < vocab_size:
        warnings.append(f"the corpus is too small for {vocab_size} tokens: learned {actual} (no pair left to merge "
                        "often enough); give more text or a smaller --vocab")
    if info.get("dropped_piece_occurrences"):
        share = info["dropped_piece_occurrences"] / max(1, info["piece_occurrences"])
        warnings.append(f"superword piece table was full: {share:.1%} of piece occurrences were dropped; raise "
                        "max_piece_types or give less text")
    for w in warnings:
        log.warning("tokenzip: %s", w)
    return Trained(tok, algo, actual, transition, seconds, _peak_rss_mb(), info, warnings)


def evaluate(trained: Trained, heldout: Sequence[str], curve_points: int = 8) -> dict[str, Any]:
    """Held-out efficiency, exact round trip, and (BPE family) bytes per token at smaller sizes."""
    heldout = [t for t in heldout if t]
    if not heldout:
        return {"heldout": None}
    stats = measure(LoadedTokenizer(trained.algo, fast=trained.tokenizer), heldout)
    out: dict[str, Any] = {"heldout": stats.row()}
    if trained.algo in ("bpe", "superbpe"):
        base = len(alphabet()) + len(SPECIAL_TOKENS)
        marks = [trained.transition] if trained.transition else []
        sizes = default_sizes(trained.vocab_size, base, curve_points, marks)
        out["curve"] = bytes_per_token_curve(trained.tokenizer, heldout, sizes)
    return out


def report_markdown(report: dict[str, Any]) -> str:
    h = report.get("heldout") or {}
    rows = [{"item": k, "value": v} for k, v in (
        ("algorithm", report["algo"]), ("vocabulary", report["vocab_size"]), ("transition", report["transition"]),
        ("corpus", report["corpus"]["description"]), ("training bytes", report["corpus"]["train_bytes"]),
        ("held-out bytes", report["corpus"]["heldout_bytes"]), ("training seconds", round(report["seconds"], 1)),
        ("peak RSS (MB)", round(report["peak_rss_mb"])), ("held-out bytes/token", h.get("bytes/token")),
        ("held-out chars/token", h.get("chars/token")), ("held-out fertility", h.get("fertility")),
        ("exact round trip", h.get("round trip")),
    )]
    lines = [f"# Tokenizer training report: {report['algo']} {report['vocab_size']}", "",
             format_table(rows, markdown=True), ""]
    if report.get("superbpe"):
        stages = [{"item": k, "value": v} for k, v in report["superbpe"].items()]
        lines += ["## SuperBPE stages", "", format_table(stages, markdown=True), ""]
    if report.get("curve"):
        lines += ["## Bytes per token at smaller vocabularies (same run, merge list cut)", "",
                  format_table(report["curve"], markdown=True), ""]
    for w in report.get("warnings", []):
        lines.append(f"- warning: {w}")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def save(trained: Trained, out: str | Path, corpus: Any, evaluation: dict[str, Any], command: str = "") -> dict:
    """Write ``out/tokenizer.json``, ``out/training_report.json`` and ``out/training_report.md``."""
    import tokenizers

    out = out_dir(out, "--out")
    trained.tokenizer.save(str(out / "tokenizer.json"))
    report = {
        "algo": trained.algo, "vocab_size": trained.vocab_size, "transition": trained.transition,
        "seconds": trained.seconds, "peak_rss_mb": trained.peak_rss_mb,
        "corpus": {"description": corpus.description, "train_bytes": corpus.train_bytes,
                   "heldout_bytes": corpus.heldout_bytes, "meta": corpus.meta},
        "superbpe": trained.info or None, "warnings": trained.warnings, "command": command,
        "versions": {"tokenizers": tokenizers.__version__, "python": platform.python_version()},
        **evaluation,
    }
    write_json(out / "training_report.json", report)
    (out / "training_report.md").write_text(report_markdown(report), encoding="utf-8")
    return report
