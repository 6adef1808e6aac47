"""`tokenzip bench` and `tokenzip report` from the command line."""

from __future__ import annotations

import json

from tokenzip.cli import main


def test_list_tasks(capsys):
    assert main(["bench", "--list-tasks"]) == 0
    out = capsys.readouterr().out
    assert "niah_multiquery" in out and "kv_retrieval" in out and "haystack=noise" in out


def test_bench_export_and_report(tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    assert main(["bench", "--model", "tiny:llama", "--tasks", "niah_single", "vt", "--context", "300",
                 "--samples", "2", "--export-tasks", str(tasks)]) == 0
    assert len(tasks.read_text().splitlines()) == 4
    out = tmp_path / "run"
    assert main(["bench", "--model", "tiny:llama", "--methods", "streaming_llm", "--ratios", "0.5,0.75",
                 "--tasks-file", str(tasks), "--out", str(out), "--max-new-tokens", "2", "--threads", "1",
                 "--no-warmup", "--report"]) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 3 and {r["task"] for r in rows} == {"niah_single", "vt"}
    printed = capsys.readouterr().out
    assert "streaming_llm" in printed and "retention" in printed
    assert (out / "report.html").exists()
    assert main(["report", str(out), "--no-plots", "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.md").exists()


def test_errors_are_reported_clearly(tmp_path, capsys):
    assert main(["bench", "--model", "tiny:llama", "--tasks", "niah", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task 'niah'" in capsys.readouterr().err
    assert main(["bench", "--model", "tiny:llama", "--ratios", "half", "--out", str(tmp_path / "x")]) == 2
    assert "--ratios takes numbers" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "is not a directory of bench results" in capsys.readouterr().err
