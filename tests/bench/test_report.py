"""The report renders from a committed fixture (tokenzip and kvpress rows with hand-chosen scores)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tokenzip.bench.aggregate import aggregate, pareto
from tokenzip.bench.report import write_report
from tokenzip.bench.rows import load_rows
from tokenzip.errors import TokenzipError

FIXTURE = Path(__file__).parent / "fixtures" / "run"


def test_aggregates_are_the_hand_computed_ones():
    rows = load_rows(FIXTURE)
    assert len(rows) == 16
    by = {(e["engine"], e["method"]): e for e in aggregate(rows)}
    # tokenzip: none scores 1, 1, 1, 0 and snapkv 1, 0, 0.5, 1 on the same four samples
    assert by[("tokenzip", "none")]["score"] == 75.0
    assert by[("tokenzip", "snapkv")]["score"] == 62.5
    assert by[("tokenzip", "snapkv")]["vs none"] == pytest.approx(100 * 62.5 / 75)
    assert by[("tokenzip", "snapkv")]["retention"] == pytest.approx(50.0)  # (1 + 0 + 0.5) / 3
    # kvpress rows are read against kvpress's own uncompressed rows: 1, 1, 1, 1 vs 1, 1, 0, 0
    assert by[("kvpress", "kvpress:snapkv")]["vs none"] == 50.0
    assert by[("kvpress", "kvpress:snapkv")]["retention"] == 50.0
    assert by[("tokenzip", "snapkv")]["cache_MiB"] == pytest.approx(2000000 / 2**20)
    assert by[("tokenzip", "snapkv")]["latency_s"] == pytest.approx(1.41)


def test_report_files(tmp_path):
    pytest.importorskip("matplotlib")
    written = write_report(FIXTURE, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "| kvpress:snapkv" in markdown and "## Score per task" in markdown
    assert "depth 0.0-0.2" in markdown and "depth 0.8-1.0" in markdown
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html and "src='plots/" not in html
    for name in ("score_vs_ratio", "score_vs_latency", "score_vs_memory"):
        assert written[name].read_bytes().startswith(b"\x89PNG")
    assert not list(tmp_path.glob(".*tmp*")) and not list((tmp_path / "plots").glob(".*tmp*"))


def test_report_errors(tmp_path):
    with pytest.raises(TokenzipError, match="not a directory"):
        load_rows(tmp_path / "missing")
    with pytest.raises(TokenzipError, match="holds no"):
        load_rows(tmp_path)
    run = tmp_path / "copy"
    shutil.copytree(FIXTURE, run)
    with open(run / "rows.jsonl", "a") as f:
        f.write('{"key": "unfinished')
    assert len(load_rows(run)) == 16


def test_damaged_rows_are_skipped_with_a_warning_naming_the_line(tmp_path, caplog):
    """Bytes that are not UTF-8, or a score that is not a number, cost that row only (they crashed the report)."""
    run = tmp_path / "copy"
    shutil.copytree(FIXTURE, run)
    lines = (run / "rows.jsonl").read_bytes().splitlines(keepends=True)
    good = json.loads(lines[0])
    lines[1] = lines[1].replace(b'"key"', b'"k\xe9y"')  # a Latin-1 byte
    lines[2] = (json.dumps(dict(good, key="bad-score", score="high")) + "\n").encode()
    lines[3] = (json.dumps(dict(good, key="bad-ratio", ratio=None)) + "\n").encode()
    (run / "rows.jsonl").write_bytes(b"".join(lines))
    with caplog.at_level("WARNING"):
        rows = load_rows(run)
    assert len(rows) == 16 - 3
    assert "rows.jsonl, line 2: not UTF-8 text" in caplog.text
    assert "rows.jsonl, line 3: a damaged row ('score' is 'high', not a number)" in caplog.text
    assert "rows.jsonl, line 4: a damaged row ('ratio' is None, not a number)" in caplog.text
    assert aggregate(rows)  # the report renders from what is left


def test_pareto_front():
    points = [(1.0, 50.0), (2.0, 60.0), (1.5, 40.0), (3.0, 60.0), (0.5, 10.0)]
    assert pareto(points) == [(0.5, 10.0), (1.0, 50.0), (2.0, 60.0)]


def test_task_kinds_get_their_own_summary(tmp_path):
    import json

    run = tmp_path / "mixed"
    shutil.copytree(FIXTURE, run)
    base = json.loads((FIXTURE / "rows.jsonl").read_text().splitlines()[0])
    with open(run / "rows.jsonl", "a") as f:
        for method, ratio, nll in (("none", 0.0, 2.0), ("snapkv", 0.5, 2.5)):
            f.write(json.dumps(dict(base, task="perplexity", task_kind="perplexity", metric="nll", method=method,
                                    ratio=ratio, score=nll, nll=nll, key=f"perplexity|1024|0|{method}|{ratio:g}",
                                    metadata={})) + "\n")
    rows = load_rows(run)
    by = {(e["engine"], e["method"]): e for e in aggregate([r for r in rows if r["task_kind"] == "perplexity"])}
    assert by[("tokenzip", "snapkv")]["vs none"] == pytest.approx(0.5)  # NLL increase in nats
    markdown = write_report(run, tmp_path / "out", with_plots=False)["markdown"].read_text()
    assert "## Summary: score (%, string match)" in markdown and "## Summary: NLL (nats" in markdown
    assert "| snapkv         | 0.5   | 4 | 62.5" in markdown  # the QA summary is not mixed with NLL rows


def test_task_table_splits_context_lengths():
    from tokenzip.bench.report import task_table

    rows = [dict(r) for r in load_rows(FIXTURE) if r.get("engine", "tokenzip") == "tokenzip"]
    longer = [dict(r, length=r["length"] * 2) for r in rows]
    for r in longer:  # at the longer length, snapkv fails every sample: 0% of the uncompressed score
        if r["method"] == "snapkv":
            r["score"] = 0.0
    table = task_table(rows + longer)
    length = rows[0]["length"]

    def cells(line):
        return [c.strip() for c in line.strip("|").split("|")]

    snapkv = next(line for line in table.splitlines() if line.startswith("| snapkv"))
    by_column = dict(zip(cells(table.splitlines()[0]), cells(snapkv)))
    for e in aggregate(rows, by=("task",)):
        if e["method"] == "snapkv":
            assert by_column[f"{e['task']} {length}"] == f"{round(e['score'], 1):g} ({e['vs none']:.0f}%)"
            assert by_column[f"{e['task']} {2 * length}"] == "0 (0%)"
