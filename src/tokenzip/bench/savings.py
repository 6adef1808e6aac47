"""The report's pipeline part, rendered: where each pipeline's KV savings came from, and one score/compression
frontier (the numbers: :func:`tokenzip.bench.aggregate.configurations`).

Read from rows of ``tokenzip bench --pipeline`` (rows with ``pipeline`` and ``bytes_by_stage``, see
:mod:`tokenzip.bench.stages.pipeline`). For each configuration (a spec; single-stage and composed alike):

* effective KV compression: the bytes of the uncompressed model's cache on the original contexts divided by
  the bytes held after the last stage, summed over the samples (``2.0`` = half the memory);
* each stage's share: the part of those dense bytes the stage removed (the prompt stage: the dense cache of
  the shorter text against that of the original), and the part still held;
* the frontier: configurations no other one beats on both score and effective compression.
"""

from __future__ import annotations

import io
from typing import Any

from tokenzip.bench.aggregate import STAGES, configurations, pipeline_rows
from tokenzip.errors import require
from tokenzip.table import format_table

COLORS = {"prompt": "#4c72b0", "layers": "#dd8452", "kv": "#55a868", "held": "#c8c8c8"}


def savings_table(rows: list[dict[str, Any]], markdown: bool = True) -> str:
    """One line per configuration: score, effective compression, each stage's share, on the frontier or not."""
    table = []
    for e in configurations(rows):
        line = {"pipeline": e["pipeline"], "n": e["n"], "score": round(e["score"], 1),
                "vs none": None if e["vs none"] is None else round(e["vs none"], 1),
                "KV x": round(e["compression"], 2)}
        for stage in (*STAGES, "held"):
            share = e["shares"].get(stage)
            name = f"{stage} %" if stage == "held" else f"by {stage} %"
            line[name] = None if share is None else round(100 * share, 1)
        line["frontier"] = "yes" if e["frontier"] else ""
        table.append(line)
    columns = ["pipeline", "n", "score", "vs none", "KV x", "by prompt %", "by layers %", "by kv %", "held %",
               "frontier"]
    return format_table(table, columns, markdown=markdown)


NOTE = ("`KV x`: effective KV compression, the bytes the uncompressed model's cache holds for the original contexts "
        "over the bytes held after the last stage (summed over samples). `by <stage> %`: the part of those dense bytes "
        "the stage removed (prompt: the dense cache of the shorter text against the original's); `held %`: what is "
        "left. `frontier`: no other configuration has both a higher or equal score and a higher or equal compression.")


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The report's pipeline section (markdown lines; none when the rows hold no pipeline)."""
    if not pipeline_rows(rows):
        return []
    return ["## Pipelines: where the savings came from", "", savings_table(rows), "", NOTE, ""]


def plots(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    """PNG bytes of the stacked savings chart and the score/compression frontier (none without pipeline rows)."""
    mine = pipeline_rows(rows)
    if not mine:
        return {}
    matplotlib = require("matplotlib", "bench")
    matplotlib.use("Agg")
    return {"savings_by_stage": _stacked(mine), "score_vs_compression": _frontier_plot(mine)}


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _stacked(rows: list[dict[str, Any]]) -> bytes:
    """One horizontal bar per pipeline (a panel per context length): the dense cache split into what each stage
    removed and what is held."""
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in rows})
    entries = configurations(rows, by=("length",))
    count = max(sum(1 for e in entries if e["length"] == n) for n in lengths)
    fig, axes = plt.subplots(len(lengths), 1, figsize=(9, 0.9 + (0.32 * count + 0.6) * len(lengths)), dpi=110,
                             squeeze=False)
    for ax, length in zip(axes[:, 0], lengths):
        mine = [e for e in entries if e["length"] == length]
        names = [e["pipeline"] for e in mine]
        left = [0.0] * len(mine)
        for part in (*STAGES, "held"):
            widths = [100 * e["shares"].get(part, 0.0) for e in mine]
            if any(widths):
                ax.barh(names, widths, left=left, color=COLORS[part])
                left = [a + b for a, b in zip(left, widths)]
        for i, e in enumerate(mine):
            ax.text(101, i, f"{e['compression']:.2f}x, score {e['score']:.0f}", va="center", fontsize=7)
        ax.set_xlim(0, 125)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{length} tokens: % of the uncompressed KV cache's bytes", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[p]) for p in (*STAGES, "held")]
    axes[-1, 0].legend(handles, [f"removed by {s}" for s in STAGES] + ["held"], fontsize=7, ncol=4,
                       loc="upper center", bbox_to_anchor=(0.45, -0.12 * max(1, 8 / count) / 2))
    return _png(fig)


def _frontier_plot(rows: list[dict[str, Any]]) -> bytes:
    """Score against effective compression for every configuration; the frontier joined and labelled."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    entries = configurations(rows)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for e in entries:
        stages = e["stages"]
        if not stages:
            style = dict(color="black", marker="o", markersize=8)
        elif len(stages) == 1:
            style = dict(color=COLORS[stages[0]], marker="o", markersize=6)
        else:
            style = dict(color="#8172b3", marker="*", markersize=10)
        ax.plot([e["compression"]], [e["score"]], linestyle="none", alpha=0.85, **style)
    front = sorted((e for e in entries if e["frontier"]), key=lambda e: e["compression"])
    ax.plot([e["compression"] for e in front], [e["score"] for e in front], color="grey", linestyle=":",
            linewidth=2, zorder=0)
    for e in front:
        ax.annotate(e["pipeline"], (e["compression"], e["score"]), fontsize=6, textcoords="offset points",
                    xytext=(4, 3))
    for name, style in (("uncompressed", dict(color="black", marker="o")),
                        *((f"{s} alone", dict(color=COLORS[s], marker="o")) for s in STAGES),
                        ("composed", dict(color="#8172b3", marker="*", markersize=10))):
        ax.plot([], [], linestyle="none", label=name, **style)
    ax.plot([], [], color="grey", linestyle=":", linewidth=2, label="frontier")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.set_xlabel("effective KV compression (dense bytes / bytes held)")
    ax.set_ylabel("score (%, string match)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("score vs effective KV compression, every configuration")
    return _png(fig)
