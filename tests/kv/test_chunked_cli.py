"""--chunk-size on `tokenzip generate` and `tokenzip bench`, and the bench rows of a chunked prefill."""

import json

import pytest

from tokenzip.bench.stages import build_method, with_chunk_size
from tokenzip.cli import main
from tokenzip.errors import TokenzipError
from tokenzip.testing import tiny_model

CONTEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 6


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    model, tok = tiny_model("llama")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "context.txt").write_text(CONTEXT)
    return path


def test_generate_chunk_size(tiny_dir, capsys):
    args = ["generate", "--model", str(tiny_dir), "--method", "snapkv", "--budget", "30", "--context",
            str(tiny_dir / "context.txt"), "--question", "Q: number?", "--max-new-tokens", "3"]
    assert main([*args, "--chunk-size", "32", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["chunk_size"] == 32 and row["cache_bytes"] == row["cache_bytes_before"]  # never held more
    assert row["achieved_ratio"] == pytest.approx(1 - 30 / row["tokens_in"])
    assert main([*args, "--chunk-size", "32"]) == 0
    assert "compressed while prefilling, chunks of 32" in capsys.readouterr().err
    assert main([*args[:4], "kvmerger", *args[5:], "--chunk-size", "32"]) != 0
    assert "cannot compress while prefilling in chunks" in capsys.readouterr().err


def test_bench_specs_take_a_budget_and_a_chunk_size():
    assert with_chunk_size(["none", "snapkv", "kvzip:budget=64", "knorm:chunk_size=8"], 32) == [
        "none", "snapkv:chunk_size=32", "kvzip:budget=64,chunk_size=32", "knorm:chunk_size=8"]
    method = build_method("kv", "snapkv:budget=64,chunk_size=32", 0.0)
    assert method.budget == 64 and method.chunk_size == 32
    with pytest.raises(TokenzipError, match="--ratios 0"):
        build_method("kv", "snapkv:budget=64", 0.5)


def test_bench_rows_of_a_chunked_prefill(tmp_path):
    from tokenzip.bench import runner

    rows = runner.run(model="tiny:llama", methods=["snapkv:budget=40,chunk_size=32"], ratios=[0],
                      tasks=["niah_single"], context=200, samples=1, out=tmp_path / "run", loaded=tiny_model("llama"),
                      warmup=False, progress=False, summary=False, max_new_tokens=4)
    by = {r["method"]: r for r in rows}
    chunked, dense = by["snapkv:budget=40,chunk_size=32"], by["none"]
    assert chunked["chunk_size"] == 32 and dense["chunk_size"] is None
    assert chunked["cache_bytes_before"] is None and chunked["cache_bytes"] < dense["cache_bytes"]
    for row in (chunked, dense):
        assert row["prefill_peak_rss_bytes"] >= row["rss_start_bytes"] > 0 and row["decode_peak_rss_bytes"] > 0
        assert row["peak_rss_bytes"] == max(row["prefill_peak_rss_bytes"], row["decode_peak_rss_bytes"])
    assert 0 < chunked["compress_seconds"] < chunked["prefill_seconds"]


def test_chunk_size_given_twice_and_differently_is_refused(tmp_path, capsys):
    """Issue 23, item 8: ``--param chunk_size=8 --chunk-size 16`` used 16 but printed 8; the API let the argument
    win silently. Given twice it must agree (the same value is fine)."""
    import tokenzip as tz

    context = tmp_path / "ctx.txt"
    context.write_text("The cat sat on the mat near the river. " * 10)
    assert main(["generate", "--model", "tiny:llama", "--context", str(context), "--question", "Q?",
                 "--param", "chunk_size=8", "--chunk-size", "16"]) == 2
    assert "chunk_size=16 was given, and the method's own chunk_size is 8: give it once" in capsys.readouterr().err
    model, tok = tiny_model("llama")
    method = tz.get_method("snapkv", ratio=0.5, chunk_size=8)
    with pytest.raises(TokenzipError, match="give it once"):
        tz.kv.answer(model, tok, context.read_text(), "Q?", method, chunk_size=16)
    with pytest.raises(TokenzipError, match="give it once"):
        with tz.compress(model, method, chunk_size=16):
            pass
    same = tz.kv.answer(model, tok, context.read_text(), "Q?", method, chunk_size=8, max_new_tokens=2)[0]
    assert same.chunk_size == 8
