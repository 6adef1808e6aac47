"""Issue 23, item 7: what the user gets wrong is a message and exit code 2, never a traceback; refused before work.

Output paths (a file where a directory goes, a directory where a file goes, a path through a file), rows with
fields that are not numbers, a model directory with no model in it, and threads or devices the machine has not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tokenzip.cli import main

ROW = {"key": "k", "method": "none", "ratio": 0.0, "score": 1.0, "task": "vt", "length": 300, "sample": 0,
       "achieved_ratio": 0.0, "cache_bytes": 1024, "peak_rss_bytes": 2048, "decode_tokens_per_second": 9.0,
       "prefill_seconds": 0.1, "compress_seconds": 0.0, "decode_seconds": 0.1}


@pytest.fixture()
def rows_dir(tmp_path: Path) -> Path:
    out = tmp_path / "rows"
    out.mkdir()
    rows = [dict(ROW), dict(ROW, key="k2", method="snapkv", ratio=0.5, score=0.0)]
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def refused(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    return err


def test_report_output_paths_are_checked(tmp_path, rows_dir, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    refused(capsys, ["report", str(rows_dir), "--no-plots", "--out", str(a_file)], "exists and is not a directory")
    refused(capsys, ["report", str(rows_dir), "--no-plots", "--out", str(a_file / "sub")], "cannot create",
            "Not a directory")
    (rows_dir / "report.md").mkdir()
    refused(capsys, ["report", str(rows_dir), "--no-plots"], "report.md is a directory")


@pytest.mark.parametrize("field", ["cache_bytes", "achieved_ratio", "peak_rss_bytes", "decode_tokens_per_second"])
def test_a_row_with_a_field_that_is_not_a_number_is_skipped_with_a_warning(tmp_path, rows_dir, field, capsys, caplog):
    with (rows_dir / "rows.jsonl").open("a") as f:
        f.write(json.dumps(dict(ROW, key="bad", **{field: "abc"})) + "\n")
    assert main(["report", str(rows_dir), "--no-plots", "--out", str(tmp_path / "rep")]) == 0
    assert f"line 3: a damaged row ('{field}' is 'abc', not a number)" in caplog.text
    assert (tmp_path / "rep" / "report.md").exists()


def test_bench_output_paths_are_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    common = ["bench", "--model", "tiny:llama", "--tasks", "vt", "--context", "300", "--samples", "1"]
    refused(capsys, [*common, "--out", str(a_file / "run")], "cannot create --out", "Not a directory")
    refused(capsys, [*common, "--export-tasks", str(tmp_path)], "--export-tasks file", "is a directory")
    refused(capsys, [*common, "--export-tasks", str(a_file / "t.jsonl")], "exists and is not a directory")


def test_export_tasks_dash_is_standard_output(tmp_path, capsys, monkeypatch):
    """Item 8: ``--export-tasks -`` wrote a file named ``-``."""
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--model", "tiny:llama", "--tasks", "vt", "--context", "300", "--samples", "1",
                 "--export-tasks", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[0])["task"] == "vt" and not (tmp_path / "-").exists()
    assert "wrote 1 prompts to standard output" in captured.err


@pytest.mark.parametrize("flags, words", [
    (["--threads", "0"], ["--threads", "integer >= 1", "got 0"]),
    (["--device", "nosuch"], ["--device 'nosuch' is not a device"]),
    (["--device", "cuda:7"], ["--device cuda:7", "use --device cpu"]),
])
def test_threads_and_devices_the_machine_has_not_are_refused_before_any_work(tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    refused(capsys, ["bench", "--model", "tiny:llama", "--tasks", "vt", "--context", "300", "--samples", "1",
                     "--out", str(out), *flags], *words)
    assert not out.exists()


def test_a_directory_with_no_model_is_a_message(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text('{"model_type": "llama"}')
    for path, words in ((empty, ["has no config.json and no weights"]), (config_only, ["has no weights"])):
        refused(capsys, ["bench", "--model", str(path), "--tasks", "vt", "--out", str(tmp_path / "run")], *words,
                "save_pretrained")
        refused(capsys, ["generate", "--model", str(path), "--context", str(config_only / "config.json"),
                         "--question", "q"], *words)


def test_tokenizers_audit_output_is_checked_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    refused(capsys, ["tokenizers", "audit", "gemma-3-270m", "--out", str(a_file)], "exists and is not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_output_directory_is_a_message(tmp_path, rows_dir, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused(capsys, ["report", str(rows_dir), "--no-plots", "--out", str(locked)], "not writable")
        refused(capsys, ["bench", "--model", "tiny:llama", "--tasks", "vt", "--out", str(locked / "run")],
                "cannot create")
    finally:
        locked.chmod(0o755)


def test_a_chunk_size_of_zero_is_not_ignored_beside_a_pipeline(tmp_path, capsys):
    """Item 8: ``bench --pipeline ... --chunk-size 0`` was ignored (0 is falsy) while other values were refused."""
    refused(capsys, ["bench", "--model", "tiny:llama", "--pipeline", "kv:snapkv@0.5", "--chunk-size", "0",
                     "--tasks", "vt", "--out", str(tmp_path / "run")], "--pipeline replaces", "--chunk-size")
