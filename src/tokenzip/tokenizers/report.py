"""Write audit and training reports: JSON, a markdown page, and plots (matplotlib, the ``bench`` extra)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenzip.errors import require
from tokenzip.table import format_table
from tokenzip.textio import out_dir

CORPUS_COLUMNS = ["tokenizer", "model", "vocab", "tokens", "bytes/token", "chars/token", "fertility", "vocab use",
                  "not exact", "unknown share"]
LANGUAGE_COLUMNS = ["tokenizer", "language", "strings", "tokens", "bytes/token", "fertility", "premium",
                    "byte premium", "round trip", "unknown share"]


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_clean(data), indent=2, ensure_ascii=False, default=_json_default) + "\n",
                    encoding="utf-8")


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_premiums(result: Any, path: Path) -> None:
    """Bars of each language's token premium against English: one panel per tokenizer, languages in
    the same order (by the first tokenizer's premium), the UTF-8 byte premium as a gray tick."""
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    reference = result.meta.get("reference")
    names = result.meta["tokenizers"]
    table = [r for r in result.premium_table() if r["language"] != reference]
    table.sort(key=lambda r: -(r.get(names[0]) or 0))
    xs = list(range(len(table)))
    fig, axes = plt.subplots(len(names), 1, figsize=(max(7.0, 0.2 * len(table) + 1.5), 1.2 + 2.0 * len(names)),
                             squeeze=False)
    unknown = {(r["tokenizer"], r["language"]): r.get("unknown share") or 0 for r in result.language_rows}
    for ax, name in zip(axes[:, 0], names):
        flagged = [unknown.get((name, r["language"]), 0) > 0.01 for r in table]
        ax.bar(xs, [r.get(name) or 0 for r in table], width=0.75,
               color=["tab:orange" if f else "tab:blue" for f in flagged])
        ax.scatter(xs, [r["byte premium"] for r in table], color="gray", marker="_", s=60, zorder=3)
        handles = [Patch(color="tab:blue", label=f"{name}: tokens"),
                   Line2D([], [], color="gray", marker="_", linestyle="none", label="UTF-8 bytes")]
        if any(flagged):
            handles.insert(1, Patch(color="tab:orange", label="over 1% unknown tokens: premium understated"))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("premium")
        ax.set_xlim(-0.7, len(table) - 0.3)
        ax.set_xticks(xs)
        ax.set_xticklabels([r["language"] for r in table], rotation=90, fontsize=7)
        ax.legend(handles=handles, fontsize=7, loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title(f"Token premium vs {reference} on {result.meta.get('parallel_strings', '?')} aligned strings "
                         "(tokens / English tokens for the same content)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bytes_per_token_by_language(result: Any, path: Path) -> None:
    """Bytes per token in each language, one line per tokenizer (languages sorted by the first)."""
    plt = _pyplot()
    names = result.meta["tokenizers"]
    rows = result.language_rows
    langs = sorted({r["language"] for r in rows if r["tokenizer"] == names[0]},
                   key=lambda lang: next(r["bytes/token"] for r in rows if r["tokenizer"] == names[0]
                                         and r["language"] == lang))
    fig, ax = plt.subplots(figsize=(max(7, 0.18 * len(langs)), 4))
    for name in names:
        by = {r["language"]: r["bytes/token"] for r in rows if r["tokenizer"] == name}
        ax.plot(range(len(langs)), [by.get(lang, float("nan")) for lang in langs], marker="o", markersize=3,
                label=name)
    ax.set_xticks(range(len(langs)))
    ax.set_xticklabels(langs, rotation=90, fontsize=7)
    ax.set_ylabel("UTF-8 bytes per token")
    ax.set_title("Bytes per token by language (parallel text)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(curves: dict[str, Sequence[dict[str, float]]], path: Path, title: str,
                marks: dict[str, int] | None = None) -> None:
    """Bytes per token against vocabulary size, one line per tokenizer (cut merge lists)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, rows in curves.items():
        ax.plot([r["vocab_size"] for r in rows], [r["bytes_per_token"] for r in rows], marker="o", markersize=3,
                label=name)
        if marks and name in marks:
            ax.axvline(marks[name], linestyle=":", linewidth=0.8, color="gray")
    ax.set_xlabel("vocabulary size (merge list cut)")
    ax.set_ylabel("bytes per token (held-out)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def audit_markdown(result: Any) -> str:
    lines = ["# Tokenizer audit", ""]
    if result.corpus_rows and "tokens" in result.corpus_rows[0]:
        lines += [f"Corpus: {result.meta.get('corpus', '')}", "", format_table(result.corpus_rows, CORPUS_COLUMNS,
                                                                              markdown=True), ""]
        failures = [(r["tokenizer"], r["first round-trip failure"]) for r in result.corpus_rows
                    if r.get("first round-trip failure")]
        for name, failure in failures:
            lines.append(f"- `{name}` does not round-trip exactly, e.g. {failure}")
        lines.append("")
    if result.language_rows:
        names = result.meta["tokenizers"]
        lines += [f"## Token premium vs {result.meta.get('reference')} ({result.meta.get('parallel_strings')} aligned "
                  f"strings, {len(result.parallel_counts) - 1} other languages)", "",
                  f"Source: {result.meta.get('parallel_source')}.", "",
                  format_table(result.premium_summary(), markdown=True), "",
                  format_table(result.premium_table(), ["language", "byte premium", *names], markdown=True), ""]
        for w in result.meta.get("parallel_warnings") or []:
            lines.append(f"- warning: {w}")
        lines += ["## Per language", "", format_table(result.language_rows, LANGUAGE_COLUMNS, markdown=True), ""]
    if result.curves:
        lines += ["## Bytes per token by vocabulary size (merge list cut)", ""]
        for name, rows in result.curves.items():
            lines += [f"### {name}", "", format_table(rows, markdown=True), ""]
    return "\n".join(lines)


def write_audit_report(result: Any, out: str | Path, plots: bool = True) -> list[Path]:
    """audit.json, audit.md and (with matplotlib) premium / bytes-per-token plots in ``out``."""
    out = out_dir(out, "--out")
    write_json(out / "audit.json", {"meta": result.meta, "corpus": result.corpus_rows,
                                    "languages": result.language_rows, "parallel_counts": result.parallel_counts,
                                    "curves": result.curves})
    (out / "audit.md").write_text(audit_markdown(result), encoding="utf-8")
    written = [out / "audit.json", out / "audit.md"]
    if plots:
        if result.language_rows:
            plot_premiums(result, out / "premium.png")
            plot_bytes_per_token_by_language(result, out / "bytes_per_token_by_language.png")
            written += [out / "premium.png", out / "bytes_per_token_by_language.png"]
        if result.curves:
            plot_curves(result.curves, out / "bytes_per_token_vs_vocab.png", "Bytes per token by vocabulary size")
            written.append(out / "bytes_per_token_vs_vocab.png")
    return written
