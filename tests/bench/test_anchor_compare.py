"""benchmarks/anchor_compare.py: tokenzip's rows beside kvpress's, on the samples both have."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "anchor_compare.py"


@pytest.fixture(scope="module")
def anchor_compare():
    spec = importlib.util.spec_from_file_location("anchor_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(engine, method, ratio, sample, score, task="niah", prediction="x", seconds=(1.0, 0.5, 2.0), kept=None):
    prefill, compress, decode = seconds
    return {"engine": engine, "stage": "kv", "method": method, "ratio": ratio, "task": task, "length": 2048,
            "sample": sample, "score": score, "predictions": [prediction], "prefill_seconds": prefill,
            "compress_seconds": compress, "decode_seconds": decode,
            "achieved_ratio": ratio if kept is None else 1 - kept}


def test_only_samples_both_engines_ran_with_none_in_both(anchor_compare):
    tz = [row("tokenzip", "none", 0, s, 1.0) for s in range(4)] + [
        row("tokenzip", "snapkv", 0.5, 0, 1.0), row("tokenzip", "snapkv", 0.5, 1, 0.0),
        row("tokenzip", "snapkv", 0.5, 2, 1.0)]  # sample 3: tokenzip has none but no snapkv row
    kp = [row("kvpress", "none", 0, s, 1.0 if s != 1 else 0.0, prediction="y" if s == 1 else "x")
          for s in (0, 1, 3)] + [  # kvpress has no none row for sample 2
        row("kvpress", "snapkv", 0.5, s, 0.0) for s in (0, 1, 2, 3)]
    records = {(r["method"], r["ratio"]): r for r in anchor_compare.compare(tz, kp)}
    snap = records[("snapkv", 0.5)]
    assert snap["n"] == 2  # samples 0 and 1: the only ones with snapkv and none in both
    assert snap["tokenzip"]["score"] == 0.5 and snap["kvpress"]["score"] == 0.0
    assert snap["tokenzip"]["vs_none"] == 0.5  # 0.5 of tokenzip's own none (1.0)
    assert snap["kvpress"]["vs_none"] == 0.0  # 0.0 of kvpress's own none (0.5)
    assert snap["tokenzip"]["right"] == 2 and snap["kvpress"]["right"] == 1  # each engine's own right samples
    assert snap["tokenzip"]["retention"] == 0.5 and snap["kvpress"]["retention"] == 0.0
    assert snap["same"] == 1  # sample 1: both 0.0
    none = records[("none", 0.0)]
    assert none["n"] == 3 and none["same_predictions"] == 2  # samples 0, 1, 3; kvpress answered "y" on 1


def test_seconds_and_kept(anchor_compare):
    tz = [row("tokenzip", "none", 0, 0, 1.0), row("tokenzip", "knorm", 0.75, 0, 1.0, seconds=(10.0, 0.25, 2.0))]
    kp = [row("kvpress", "none", 0, 0, 1.0),
          row("kvpress", "knorm", 0.75, 0, 1.0, seconds=(7.0, None, 3.0), kept=0.3)]
    knorm = next(r for r in anchor_compare.compare(tz, kp) if r["method"] == "knorm")
    assert knorm["tokenzip"]["seconds"] == 12.25 and knorm["tokenzip"]["compress"] == 0.25
    assert knorm["kvpress"]["seconds"] == 10.0
    assert knorm["tokenzip"]["kept"] == 0.25 and knorm["kvpress"]["kept"] == pytest.approx(0.3)
    assert "| knorm | 0.75 | 1 |" in anchor_compare.table([knorm])


def test_methods_and_tasks_filter(anchor_compare):
    tz = [row("tokenzip", m, r, 0, 1.0, task=t) for m, r in (("none", 0), ("knorm", 0.5), ("snapkv", 0.5))
          for t in ("a", "b")]
    kp = [dict(r, engine="kvpress") for r in tz]
    records = anchor_compare.compare(tz, kp, methods=["knorm"], tasks=["a"])
    assert [(r["method"], r["n"]) for r in records] == [("none", 1), ("knorm", 1)]
