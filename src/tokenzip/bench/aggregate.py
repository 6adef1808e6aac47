"""Numbers from bench rows: groups, means and medians, scores against the uncompressed model, Pareto fronts.

Scores are always read against the same engine's uncompressed rows (``none``) on the same samples, the
way each row's task kind declares (:mod:`tokenzip.bench.kinds`):

* ``score``: the mean score, times the kind's display scale (string match and token F1 in %);
* ``vs none``: the method's mean over the samples both have set against the uncompressed model's mean over
  them: as % of it, or (NLL) the increase;
* ``retention`` (kinds that declare it): the method's mean score over the samples the uncompressed model
  answered fully right (DESIGN.md: a small model fails many samples anyway; this isolates what compression
  lost).

Speed and memory are medians over samples. For pipelines (:func:`configurations`): each configuration's
effective KV compression (dense bytes over bytes held), each stage's share of the dense bytes, and the
score/compression frontier. Rendering them is :mod:`tokenzip.bench.report`'s and :mod:`tokenzip.bench.savings`'s
part.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from tokenzip.bench.kinds.base import DIFFERENCE, TaskKind, kind_of


def label(row: dict[str, Any]) -> str:
    """The method's name in tables: prefixed by its engine when that is not tokenzip."""
    engine = row.get("engine", "tokenzip")
    return row["method"] if engine == "tokenzip" else f"{engine}:{row['method']}"


def sample_id(row: dict[str, Any]) -> str:
    return f"{row['task']}|{row['length']}|{row['sample']}"


def _median(values: Iterable[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _mean(values: Iterable[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _latency(row: dict[str, Any]) -> float | None:
    parts = [row.get("prefill_seconds"), row.get("compress_seconds"), row.get("decode_seconds")]
    return None if parts[0] is None else sum(p or 0.0 for p in parts)


def rows_kind(rows: list[dict[str, Any]]) -> TaskKind:
    """The task kind of ``rows`` (rows without one are ``qa``, as before kinds were recorded)."""
    return kind_of([r.get("task_kind", "qa") for r in rows])


def aggregate(rows: list[dict[str, Any]], by: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One summary dict per (engine, method, ratio[, by...]), baselines first, then by method and ratio.
    ``_kind`` holds the group's :class:`~tokenzip.bench.kinds.base.TaskKind`."""
    baseline: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["method"] == "none":
            baseline[(r.get("engine", "tokenzip"), *(r.get(b) for b in by))][sample_id(r)] = r["score"]
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r.get("engine", "tokenzip"), label(r), float(r["ratio"]), *(r.get(b) for b in by))].append(r)
    out = []
    for (engine, name, ratio, *extra), group in groups.items():
        kind = rows_kind(group)
        base = baseline.get((engine, *extra), {})
        shared = [r for r in group if sample_id(r) in base]
        entry: dict[str, Any] = {"engine": engine, "method": name, "ratio": ratio}
        entry.update({b: v for b, v in zip(by, extra)})
        entry["n"] = len(group)
        entry["score"] = kind.scale * kind.aggregation([r["score"] for r in group])
        if shared and name != "none":
            method_mean = kind.aggregation([r["score"] for r in shared])
            base_mean = kind.aggregation([base[sample_id(r)] for r in shared])
            if kind.vs_none == DIFFERENCE:
                entry["vs none"] = method_mean - base_mean
            else:
                entry["vs none"] = 100.0 * method_mean / base_mean if base_mean else None
            right = [r["score"] for r in shared if base[sample_id(r)] >= 1.0]
            entry["retention"] = 100.0 * _mean(right) if right and kind.retention else None
        else:
            entry["vs none"] = 0.0 if kind.vs_none == DIFFERENCE else 100.0 if name == "none" else None
            entry["retention"] = 100.0 if name == "none" and kind.retention else None
        entry["achieved"] = _mean(r.get("achieved_ratio") for r in group)
        entry["prefill_s"] = _median(r.get("prefill_seconds") for r in group)
        entry["compress_s"] = _median(r.get("compress_seconds") for r in group)
        entry["decode_tok_s"] = _median(r.get("decode_tokens_per_second") for r in group)
        entry["latency_s"] = _median(_latency(r) for r in group)
        cache = _median(r.get("cache_bytes") for r in group)
        entry["cache_MiB"] = cache / 2**20 if cache is not None else None
        rss = _median(r.get("peak_rss_bytes") for r in group)
        entry["peak_RSS_MiB"] = rss / 2**20 if rss is not None else None
        cuda = _median(r.get("peak_cuda_bytes") for r in group)
        if cuda is not None:
            entry["peak_CUDA_MiB"] = cuda / 2**20
        for column in kind.columns:
            entry[column] = _mean(r.get(column) for r in group)
        entry["_kind"] = kind
        out.append(entry)
    out.sort(key=lambda e: (e["engine"] != "tokenzip", e["engine"], e["method"] != "none", e["method"], e["ratio"],
                            *(str(e.get(b)) for b in by)))
    return out


def by_kind(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows split by task kind (string-match QA, perplexity, embedding, ...): their scores are not comparable.
    Listed by the kinds' declared order, then in the order the rows name them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("task_kind", "qa"), []).append(r)
    return dict(sorted(groups.items(), key=lambda item: kind_of([item[0]]).order))


def several_lengths(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows cover more than one context length (the task table then splits by length)."""
    return len({r["length"] for r in rows}) > 1


def pareto(points: list[tuple[float, float]], lower_x_better: bool = True) -> list[tuple[float, float]]:
    """Points not dominated by another (higher score, and lower x when ``lower_x_better`` else higher x)."""
    front = []
    for x, y in points:
        dominated = any((ox <= x if lower_x_better else ox >= x) and oy >= y and (ox, oy) != (x, y)
                        for ox, oy in points)
        if not dominated:
            front.append((x, y))
    return sorted(front)


# --- pipelines: each stage's share of the dense cache's bytes (rows of `tokenzip bench --pipeline`) ----------

STAGES = ("prompt", "layers", "kv")


def pipeline_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that carry a pipeline report."""
    return [r for r in rows if isinstance(r.get("pipeline"), dict) and isinstance(r.get("bytes_by_stage"), dict)]


def stages_of(spec: str) -> list[str]:
    """The stages a canonical spec text uses (``[]`` for ``none``)."""
    return [s for s in STAGES if any(item.strip().startswith(f"{s}:") for item in spec.split("|"))]


def removed_by_stage(row: dict[str, Any]) -> dict[str, int]:
    """Bytes of the dense cache each stage of ``row`` removed, and ``held``: what is left."""
    by = row["bytes_by_stage"]
    out, before = {}, by["dense"]
    for stage in STAGES:
        if stage in by:
            out[stage] = before - by[stage]
            before = by[stage]
    out["held"] = before
    return out


def configurations(rows: list[dict[str, Any]], by: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One entry per spec (and per value of the ``by`` fields): samples, score and ``vs none`` (as the summary
    table), effective compression, each stage's share of the dense bytes, and ``frontier`` (True when not
    dominated), the frontier taken within each ``by`` group."""
    mine = pipeline_rows(rows)
    scores = {(e["method"], *(e.get(b) for b in by)): e for e in aggregate(mine, by=by)}
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in mine:
        groups[(r["method"], *(r.get(b) for b in by))].append(r)
    out = []
    for key, group in groups.items():
        dense = sum(r["bytes_by_stage"]["dense"] for r in group)
        removed: dict[str, int] = defaultdict(int)
        for r in group:
            for stage, value in removed_by_stage(r).items():
                removed[stage] += value
        entry = {"pipeline": key[0], **dict(zip(by, key[1:])), "stages": stages_of(key[0]), "n": len(group),
                 "score": scores[key]["score"], "vs none": scores[key].get("vs none"),
                 "compression": dense / removed["held"] if removed["held"] else float("inf"),
                 "shares": {s: removed[s] / dense for s in (*STAGES, "held") if s in removed}}
        out.append(entry)
    for group in _split(out, by):
        front = set(frontier([(e["compression"], e["score"]) for e in group]))
        for e in group:
            e["frontier"] = (e["compression"], e["score"]) in front
    out.sort(key=lambda e: (*(str(e.get(b)) for b in by), e["compression"], e["pipeline"]))
    return out


def _split(entries: list[dict[str, Any]], by: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        groups[tuple(e.get(b) for b in by)].append(e)
    return list(groups.values())


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points (compression, score) no other point matches or beats on both (higher is better for both)."""
    return pareto(points, lower_x_better=False)
