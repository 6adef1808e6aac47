"""`tokenzip prompt`: stdin/stdout, --json, counts on stderr, clear errors."""

from __future__ import annotations

import io
import json
import sys

import pytest

from tokenzip.cli import main


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tokenzip.testing import tiny_model

    model, tok = tiny_model("llama")
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def run(monkeypatch, capsys, args, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    code = main(["prompt", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stdin_to_stdout_with_counts_on_stderr(monkeypatch, capsys, tiny_dir, make_prose):
    text = make_prose(200)
    code, out, err = run(monkeypatch, capsys, ["-", "--ratio", "0.5", "--method", "llmlingua", "--scorer", tiny_dir],
                         text)
    assert code == 0 and out and len(out) < len(text)
    assert "llmlingua:" in err and "->" in err and "ratio" in err
    assert set(out.split()) <= set(text.split())


def test_file_and_json_output(monkeypatch, capsys, tiny_dir, tmp_path):
    path = tmp_path / "in.md"
    path.write_text("# Heading\n\nThe number 12345 and many other words that can go away easily here.\n", "utf-8")
    code, out, err = run(monkeypatch, capsys, [str(path), "--budget", "20", "--method", "head", "--mode", "markdown",
                                               "--scorer", tiny_dir, "--json"])
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["tokens_after"] <= 20 and data["budget"] == 20 and data["method"] == "head"
    assert data["text"].startswith("# Heading") and "12345" in data["text"]
    assert all(len(s) == 3 for s in data["kept_spans"])


@pytest.mark.parametrize("args,stdin,message", [
    (["-", "--ratio", "1.5"], "some text", "ratio"),
    (["missing-file.txt"], "", "input file missing-file.txt does not exist"),
    (["."], "", "input file . is a directory, not a file"),
    (["-", "--mode", "json", "--method", "head"], "{not json", "valid JSON"),
    (["-", "--method", "nope"], "some text", "unknown prompt method"),
    (["-", "--keep", "(bad"], "some text", "regular expression"),
])
def test_errors_are_clear(monkeypatch, capsys, tiny_dir, args, stdin, message):
    code, out, err = run(monkeypatch, capsys, [*args, "--scorer", tiny_dir], stdin)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_non_utf8_input_is_refused(monkeypatch, capsys, tiny_dir, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café".encode("latin-1"))
    code, _, err = run(monkeypatch, capsys, [str(path), "--scorer", tiny_dir])
    assert code == 2 and "UTF-8" in err


def test_keep_order_turns_off_the_move_before_the_question(monkeypatch, capsys, tiny_dir, make_prose):
    text = make_prose(200)
    args = ["-", "--ratio", "0.5", "--method", "extractive", "--scorer", tiny_dir, "--question", "where is it?"]
    _, moved, _ = run(monkeypatch, capsys, args, text)
    _, kept, _ = run(monkeypatch, capsys, [*args, "--keep-order"], text)
    assert "\n\n" in moved and "\n\n" not in kept
    source = iter(text.split())
    assert all(word in source for word in kept.split())  # a subsequence of the original words


def test_a_budget_no_sentence_fits_is_an_error_in_the_api_and_the_cli(monkeypatch, capsys, tiny_dir, tiny):
    """Issue 23, item 8 (the contract, docs/prompt.md): extractive keeps whole sentences; under a budget smaller
    than every sentence nothing would be left, and that is an error with a message (exit code 2), not an empty
    text with exit code 0. A word-level method under the same budget keeps words."""
    import tokenzip as tz

    text = "The archive room code is 4817 and the museum opened long ago in the north. " * 3
    with pytest.raises(tz.TokenzipError, match="extractive: not one sentence of the text fits in the budget of 3 "
                                               "tokens, so nothing would be left"):
        tz.prompt.compress(text, budget=3, method="extractive", scorer=tiny, protect=False)
    code, out, err = run(monkeypatch, capsys, ["-", "--budget", "3", "--method", "extractive", "--scorer", tiny_dir,
                                               "--no-protect"], text)
    assert code == 2 and out == "" and "nothing would be left" in err and "Traceback" not in err
    kept = tz.prompt.compress(text, budget=3, method="llmlingua", scorer=tiny, protect=False)
    assert kept.text.strip() and kept.tokens_after <= 3
