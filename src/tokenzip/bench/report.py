"""``tokenzip report DIR``: tables, Pareto plots and one self-contained HTML page from bench rows.

Every ``*.jsonl`` file in DIR is read (:func:`tokenzip.bench.rows.load_rows`: tokenzip's ``rows.jsonl``
and, e.g., the kvpress anchor's rows), so methods of several engines sit side by side. The numbers
(score, ``vs none``, retention, medians of speed and memory) come from :mod:`tokenzip.bench.aggregate`,
read as each row's task kind declares; this module renders them. Speed and memory: prefill, compression
and decode seconds, decode tokens/s, cache bytes actually held, peak RSS of the process during the sample
(model weights included).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenzip.bench import savings
from tokenzip.bench.aggregate import aggregate, by_kind, pareto, pipeline_rows, rows_kind, several_lengths
from tokenzip.bench.rows import load_rows
from tokenzip.errors import TokenzipError, require
from tokenzip.table import format_table
from tokenzip.textio import out_dir, out_file, write_atomic

PLOTS = ("score_vs_ratio", "score_vs_latency", "score_vs_memory")


def _display(entries: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        row = {}
        for c in columns:
            v = e.get(c)
            if isinstance(v, float) and c in ("score", "vs none", "retention") and e["_kind"].percent:
                v = round(v, 1)
            elif isinstance(v, float) and c in ("ratio", "achieved"):
                v = round(v, 3)
            row[c] = v
        rows.append(row)
    return rows


def _score_header(rows: list[dict[str, Any]]) -> str:
    return rows_kind(rows).header


def summary_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The main table: one line per method and ratio (one table per task kind)."""
    groups = by_kind(rows)
    if len(groups) > 1:
        return "\n\n".join(f"{_score_header(g)}\n\n{summary_table(g, markdown)}" for g in groups.values())
    entries = aggregate(rows)
    columns = ["method", "ratio", "n", "score", "vs none", "retention", "achieved", "prefill_s", "compress_s",
               "decode_tok_s", "cache_MiB", "peak_RSS_MiB"]
    if any("peak_CUDA_MiB" in e for e in entries):
        columns.append("peak_CUDA_MiB")
    if any("neighbours" in e for e in entries):
        columns.insert(6, "neighbours")
    return format_table(_display(entries, columns), columns, markdown=markdown)


def task_table(rows: list[dict[str, Any]], markdown: bool = True) -> str:
    """Score per task (columns) for each method and ratio; per task and context length when there are several
    lengths, each cell then reads ``score (% of uncompressed on the same samples)``."""
    per_length = several_lengths(rows)
    by = ("task", "length") if per_length else ("task",)
    entries = aggregate(rows, by=by)
    column = (lambda e: f"{e['task']} {e['length']}") if per_length else (lambda e: e["task"])
    columns = [column(e) for e in sorted(entries, key=lambda e: tuple(e[b] for b in by))]
    table: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        key = (e["engine"], e["method"], e["ratio"])
        table.setdefault(key, {"method": e["method"], "ratio": round(e["ratio"], 3)})
        score = round(e["score"], 1) if e["_kind"].percent else round(e["score"], 3)
        if per_length and e["_kind"].percent and e["method"] != "none" and e.get("vs none") is not None:
            score = f"{score:g} ({e['vs none']:.0f}%)"
        table[key][column(e)] = score
    return format_table(list(table.values()), ["method", "ratio", *dict.fromkeys(columns)], markdown=markdown)


def depth_table(rows: list[dict[str, Any]], markdown: bool = True) -> str | None:
    """Score by the answer's depth in the context, for samples that record one (``metadata.depth``)."""
    with_depth = [dict(r, depth_bin=_depth_bin(r["metadata"]["depth"])) for r in rows
                  if isinstance(r.get("metadata"), dict) and isinstance(r["metadata"].get("depth"), (int, float))]
    if not with_depth:
        return None
    entries = aggregate(with_depth, by=("depth_bin",))
    bins = sorted({e["depth_bin"] for e in entries})
    table: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        key = (e["engine"], e["method"], e["ratio"])
        table.setdefault(key, {"method": e["method"], "ratio": round(e["ratio"], 3)})
        table[key][e["depth_bin"]] = round(e["score"], 1)
    return format_table(list(table.values()), ["method", "ratio", *bins], markdown=markdown)


def _depth_bin(depth: float) -> str:
    edges = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    for lo, hi in zip(edges, edges[1:]):
        if depth <= hi:
            return f"depth {lo:.1f}-{hi:.1f}"
    return "depth 0.8-1.0"


# --- plots ---------------------------------------------------------------------------------------------
def plots(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes of the three Pareto plots (matplotlib, the ``bench`` extra)."""
    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = next(iter(by_kind(rows).values()))  # QA rows when there are any
    entries = aggregate(rows)
    kind = rows_kind(rows)
    higher_better = kind.higher_is_better
    ylabel = kind.header
    memory_key = "cache_MiB" if any(e.get("cache_MiB") for e in entries) else "peak_RSS_MiB"
    specs = {
        "score_vs_ratio": ("achieved", "achieved ratio (fraction of tokens removed)", False),
        "score_vs_latency": ("latency_s", "median seconds per sample (prefill + compress + decode)", True),
        "score_vs_memory": (memory_key, "median KV cache held (MiB)" if memory_key == "cache_MiB"
                            else "median peak RSS (MiB)", True),
    }
    out = {}
    methods = sorted({e["method"] for e in entries})
    markers = "os^Dv<>pPX*h"
    for name, (key, xlabel, lower_better) in specs.items():
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        points = []
        for i, method in enumerate(methods):
            mine = sorted((e for e in entries if e["method"] == method and e.get(key) is not None),
                          key=lambda e: e["ratio"])
            if not mine:
                continue
            xs, ys = [e[key] for e in mine], [e["score"] for e in mine]
            style = dict(marker=markers[i % len(markers)], label=method, linestyle="-" if len(mine) > 1 else "none")
            if method == "none":
                style.update(color="black", markersize=9)
            ax.plot(xs, ys, **style)
            for e in mine:
                if method != "none":
                    ax.annotate(f"{e['ratio']:g}", (e[key], e["score"]), fontsize=7, alpha=0.7,
                                textcoords="offset points", xytext=(3, 3))
            points += list(zip(xs, ys if higher_better else [-y for y in ys]))
        if name != "score_vs_ratio" and points:
            front = pareto(points, lower_x_better=lower_better)
            ax.plot([p[0] for p in front], [p[1] if higher_better else -p[1] for p in front], color="grey",
                    linestyle=":", linewidth=2, label="Pareto front", zorder=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(name.replace("_", " "))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        out[name] = buffer.getvalue()
    return out


# --- the report ----------------------------------------------------------------------------------------
def _header(rows: list[dict[str, Any]], directory: Path) -> list[tuple[str, str]]:
    first = next((r for r in rows if r.get("engine", "tokenzip") == "tokenzip"), rows[0])
    info = [("model", str(first.get("model"))), ("stage", str(first.get("stage"))),
            ("device", str(first.get("device"))), ("versions", json.dumps(first.get("versions"))),
            ("git commit", ", ".join(sorted({str(r.get("git_commit")) for r in rows
                                              if r.get("engine", "tokenzip") == "tokenzip"}))),
            ("seed", str(first.get("seed"))),
            ("rows", f"{len(rows)} ({', '.join(sorted({r.get('engine', 'tokenzip') for r in rows}))})"),
            ("tasks", ", ".join(sorted({r['task'] for r in rows}))),
            ("context lengths", ", ".join(str(x) for x in sorted({r['length'] for r in rows})))]
    config = directory / "config.json"
    if config.exists():
        try:
            command = json.loads(config.read_text()).get("command")
        except ValueError:
            command = None
        if command:
            info.append(("command", command))
    return info


def render_markdown(rows: list[dict[str, Any]], directory: Path, plot_names: Iterable[str]) -> str:
    lines = ["# Benchmark report", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header(rows, directory)]
    lines += [""]
    for group in by_kind(rows).values():
        lines += [f"## Summary: {_score_header(group)}", "", summary_table(group, markdown=True), ""]
    lines += ["`vs none`: the method's score as % of the uncompressed model's on the same samples (for NLL: the "
              "increase in nats). `retention`: mean score on the samples the uncompressed model got fully right. "
              "`achieved`: fraction of tokens (kv: cache entries of the compressed layers) actually removed. "
              "Times and memory are medians per sample; peak RSS includes the model weights.", "",
              "## Score per task" + (" and context length" if several_lengths(rows) else ""), "",
              task_table(rows), ""]
    depth = depth_table(rows)
    if depth:
        lines += ["## Score by the answer's depth in the context", "", depth, ""]
    lines += savings.markdown(rows)
    for name in plot_names:
        lines += [f"![{name}](plots/{name}.png)", ""]
    return "\n".join(lines)


def _html_table(text_table: str) -> str:
    lines = [line for line in text_table.splitlines() if line.strip()]

    def cells(line: str) -> list[str]:  # cells split on the pipes that are not escaped ("\|" inside a cell)
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]

    head = cells(lines[0])
    body = [cells(line) for line in lines[2:]]
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out + ["</tbody></table>"])


def render_html(rows: list[dict[str, Any]], directory: Path, images: dict[str, bytes]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>tokenzip benchmark report</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}",
             "</style></head><body><h1>tokenzip benchmark report</h1><ul>"]
    parts += [f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in _header(rows, directory)]
    parts.append("</ul>")
    for group in by_kind(rows).values():
        parts += [f"<h2>Summary: {html.escape(_score_header(group))}</h2>", _html_table(summary_table(group, True))]
    parts += [
              "<p><i>vs none</i>: score as % of the uncompressed model's on the same samples (NLL: increase in "
              "nats). <i>retention</i>: mean score on the samples the uncompressed model got fully right.</p>",
              "<h2>Score per task</h2>", _html_table(task_table(rows))]
    depth = depth_table(rows)
    if depth:
        parts += ["<h2>Score by the answer's depth</h2>", _html_table(depth)]
    if pipeline_rows(rows):
        parts += ["<h2>Pipelines: where the savings came from</h2>", _html_table(savings.savings_table(rows)),
                  f"<p>{html.escape(savings.NOTE)}</p>"]
    for name, png in images.items():
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>"
                     f"<img alt='{name}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(directory: str | os.PathLike, out: str | os.PathLike | None = None,
                 with_plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for the rows in ``directory``."""
    directory = Path(directory)
    rows = load_rows(directory)
    target = out_dir(Path(out) if out else directory, "report directory")
    for name in ("report.md", "report.html", "plots"):
        if name != "plots":
            out_file(target / name, "report file")
        elif (target / name).exists() and not (target / name).is_dir():
            raise TokenzipError(f"{target / name} exists and is not a directory (the report's plots go there)")
    images = {**plots(rows), **savings.plots(rows)} if with_plots else {}
    written = {}
    if images:
        (target / "plots").mkdir(exist_ok=True)
        for name, png in images.items():
            path = target / "plots" / f"{name}.png"
            write_atomic(path, png)
            written[name] = path
    markdown = render_markdown(rows, directory, images)
    write_atomic(target / "report.md", markdown.encode())
    write_atomic(target / "report.html", render_html(rows, directory, images).encode())
    written["markdown"], written["html"] = target / "report.md", target / "report.html"
    return written
