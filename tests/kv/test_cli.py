import json

import pytest

from tokenzip.cli import main
from tokenzip.testing import tiny_model

CONTEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 5


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    model, tok = tiny_model("llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ctx = path / "context.txt"
    ctx.write_text(CONTEXT)
    return path


def test_generate_json(tiny_dir, capsys):
    code = main(["generate", "--model", str(tiny_dir), "--method", "snapkv", "--ratio", "0.5", "--context",
                 str(tiny_dir / "context.txt"), "--question", "Q: number?", "--question", "A:", "--json",
                 "--max-new-tokens", "3"])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and rows[0]["achieved_ratio"] == pytest.approx(0.5, abs=0.01)
    assert rows[0]["cache_bytes"] < rows[0]["cache_bytes_before"]


def test_generate_method_params_and_none(tiny_dir, capsys):
    ctx = str(tiny_dir / "context.txt")
    assert main(["generate", "--model", str(tiny_dir), "--method", "streaming_llm", "--param", "sinks=2",
                 "--budget", "20", "--context", ctx, "--question", "Q?", "--max-new-tokens", "2"]) == 0
    assert "achieved ratio" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_dir), "--method", "none", "--context", ctx, "--question", "Q?",
                 "--max-new-tokens", "2"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["--method", "snapkvv"], "unknown kv method 'snapkvv'"),
    (["--ratio", "1.2"], "ratio"),
    (["--param", "sinks"], "key=value"),
    (["--param", "nope=3"], "has no parameter 'nope'"),
    (["--ratio", "0.5", "--budget", "5"], "give either --ratio 0.5 (the fraction of entries removed) or --budget 5"),
    (["--param", "ratio=0.3"], "give ratio with --ratio"),
    (["--method", "snapkv", "--param", "window_size=-1"], "kv.snapkv: parameter window_size must be an integer >= 1"),
])
def test_generate_errors(tiny_dir, capsys, argv, message):
    base = ["generate", "--model", str(tiny_dir), "--context", str(tiny_dir / "context.txt"), "--question", "Q?"]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err


def test_generate_missing_context_and_model(tiny_dir, capsys):
    assert main(["generate", "--model", str(tiny_dir), "--context", "/nonexistent.txt", "--question", "Q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["generate", "--model", "gemma-270m", "--context", str(tiny_dir / "context.txt"),
                 "--question", "Q"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_generate_context_that_is_not_a_text_file(tiny_dir, tmp_path, capsys):
    """Latin-1 bytes gave a UnicodeDecodeError traceback, a directory was reported as missing."""
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Le café est à côté.\nLa clé est 42.".encode("latin-1"))
    base = ["generate", "--model", str(tiny_dir), "--question", "Q?", "--context"]
    assert main([*base, str(latin1)]) == 2
    err = capsys.readouterr().err
    assert f"context file {latin1} is not UTF-8 text: invalid byte 0xe9 at byte 6 (line 1)" in err
    assert "Traceback" not in err
    assert main([*base, str(tmp_path)]) == 2
    assert f"context file {tmp_path} is a directory, not a file" in capsys.readouterr().err


def test_generate_ratio_auto_reports_the_ratio_chosen_per_layer(tiny_dir, capsys):
    ctx = str(tiny_dir / "context.txt")
    assert main(["generate", "--model", str(tiny_dir), "--method", "leverage", "--ratio", "auto", "--param",
                 "tolerance=0.5", "--context", ctx, "--question", "Q?", "--max-new-tokens", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["chosen_ratios"] and all(0 <= r <= 0.9 for r in row["chosen_ratios"].values())
    assert row["achieved_ratio"] > 0
    assert main(["generate", "--model", str(tiny_dir), "--method", "snapkv", "--ratio", "auto", "--context", ctx,
                 "--question", "Q?"]) == 2
    assert "cannot choose its own ratio" in capsys.readouterr().err
