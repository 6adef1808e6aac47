"""`--engine` on `tokenzip generate` and `tokenzip bench`: refusals before any work, and llama.cpp rows end to end."""

import pytest

import tokenzip as tz
from tokenzip.cli import main
from tokenzip.errors import TokenzipError

CONTEXT = "The special magic number is 482913. " + "The cat jumps over the lazy dog near the river bank. " * 12


@pytest.fixture
def context_file(tmp_path):
    path = tmp_path / "context.txt"
    path.write_text(CONTEXT)
    return str(path)


def test_generate_refuses_a_method_llama_cpp_cannot_run_before_loading_anything(context_file, capsys, monkeypatch):
    import tokenzip.engines as engines

    monkeypatch.setattr(engines, "load_engine", lambda *a, **k: pytest.fail("the engine was loaded"))
    assert main(["generate", "--engine", "llamacpp", "--method", "adakv", "--ratio", "0.5", "--context", context_file,
                 "--question", "Q?"]) == 2
    err = capsys.readouterr().err
    assert "cannot run in llama.cpp" in err and "methods that can: " in err and "snapkv" in err


def test_generate_refuses_llama_cpp_options_without_the_engine(context_file, capsys):
    assert main(["generate", "--n-ctx", "1024", "--method", "snapkv", "--context", context_file,
                 "--question", "Q?"]) == 2
    assert "--engine llamacpp" in capsys.readouterr().err


def test_bench_refuses_llama_cpp_methods_and_stages_before_any_work(tmp_path):
    with pytest.raises(TokenzipError, match="cannot run in llama.cpp"):
        tz.bench.run(engine="llamacpp", model="smollm2-135m", methods=["pyramidkv"], ratios=[0.5],
                     out=tmp_path / "run", progress=False)
    with pytest.raises(TokenzipError, match="runs the kv stage"):
        tz.bench.run(engine="llamacpp", model="smollm2-135m", stage="prompt", methods=["extractive"],
                     out=tmp_path / "run", progress=False)
    with pytest.raises(TokenzipError, match="unknown engine"):
        tz.bench.run(engine="vllm", out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bench_and_generate_in_llama_cpp(tmp_path, context_file, capsys):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing: pip install 'tokenzip[llamacpp]'")
    rows = tz.bench.run(engine="llamacpp", model="smollm2-135m", methods=["snapkv"], ratios=[0.5],
                        tasks=["niah_single"], context=300, samples=1, threads=1, out=tmp_path / "run",
                        progress=False, summary=False)
    by = {r["method"]: r for r in rows}
    assert set(by) == {"none", "snapkv"} and {r["engine"] for r in rows} == {"llamacpp"}
    assert by["snapkv"]["achieved_ratio"] == pytest.approx(0.5, abs=0.01)
    assert by["snapkv"]["cache_bytes"] < by["none"]["cache_bytes"] and by["none"]["first_token_seconds"][0] > 0
    assert main(["generate", "--engine", "llamacpp", "--model", "smollm2-135m", "--threads", "1", "--method",
                 "kvzip", "--budget", "48", "--chunk-size", "64", "--n-ctx", "256", "--context", context_file,
                 "--question", "What is the special magic number?", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"engine": "llamacpp"' in out and '"chunk_size": 64' in out
