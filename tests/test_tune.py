"""`tokenzip tune`: the grid, the pruning of redundant candidates, missed targets, and a search on a tiny model that
never reports on the samples it tuned on."""

from __future__ import annotations

import io
import json

import pytest
import torch

from tokenzip.bench import tune as tune_module
from tokenzip.bench.rows import read_rows
from tokenzip.bench.tune import Figures, TuneConfig, candidates, pool, ranked, sample_fingerprints, tune
from tokenzip.cli import main
from tokenzip.errors import TokenzipError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(tmp_path, **overrides):
    kwargs = dict(targets=[0.5, 0.75], tasks=["niah_single"], contexts=[300], model="tiny:llama",
                  stages=["prompt", "kv"], methods={"prompt": ["prompt:extractive"], "kv": ["kv:snapkv"]},
                  grid={"prompt": [0.5], "kv": [0.5, 0.75]}, samples=2, tune_samples=3, out=str(tmp_path / "t"),
                  run={"max_new_tokens": 2, "threads": 1, "warmup": False, "progress": False})
    kwargs.update(overrides)
    return TuneConfig(**kwargs)


def test_the_grid_is_every_product_of_one_option_per_stage(tmp_path):
    config = small(tmp_path, stages=["prompt", "layers", "kv"], methods={"layers": ["fastv"]},
                   grid={"prompt": [0.5, 0.75], "layers": [0.5], "kv": [0.5]})
    config.validate()
    specs = candidates(config)
    assert len(specs) == 3 * 2 * 2 - 1 and len(set(specs)) == len(specs)
    assert "prompt:extractive@0.75 | layers:fastv@0.5 | kv:kvzip@0.5" in specs and "kv:kvzip@0.5" in specs


def test_bad_settings_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(TokenzipError, match="--methods 'kv:snapk'.*unknown kv method 'snapk'"):
        small(tmp_path, methods={"kv": ["kv:snapk"]}).validate()
    with pytest.raises(TokenzipError, match="without a ratio"):
        small(tmp_path, methods={"kv": ["kv:snapkv@0.5"]}).validate()
    with pytest.raises(TokenzipError, match="tune on one, report on another"):
        small(tmp_path, report_seed=0).validate()
    with pytest.raises(TokenzipError, match="0 < t < 1"):
        small(tmp_path, targets=[4]).validate()
    out = tmp_path / "cli"
    assert main(["tune", "--model", "tiny:llama", "--target", "0.5", "--methods", "kv:kivi:bits=3", "--out",
                 str(out)]) == 2
    assert "kivi" in capsys.readouterr().err and not out.exists()


def fig(spec, score, compression):
    return Figures(spec, score, 4, compression, {})


def test_pool_keeps_the_least_compressing_way_to_each_target_and_says_when_it_missed():
    kv, p = "kv:snapkv", "prompt:extractive"
    found = {s: fig(s, 50, x) for s, x in [
        (f"{kv}@0.5", 2.0), (f"{kv}@0.75", 4.0), (f"{kv}@0.875", 8.0), (f"{p}@0.5", 2.0),
        (f"{p}@0.5 | {kv}@0.5", 4.1), (f"{p}@0.5 | {kv}@0.75", 8.2), (f"{p}@0.75 | {kv}@0.5", 6.0)]}
    names, reached = pool(found, 0.75, 0.01)  # the others reach 4x too but compress more somewhere
    assert reached and names == [f"{kv}@0.75", f"{p}@0.5 | {kv}@0.5"]
    names, reached = pool(found, 0.5, 0.01)
    assert reached and names == [f"{kv}@0.5", f"{p}@0.5"]
    names, reached = pool(found, 0.95, 0.01)  # 20x: nobody gets there, those within 5% of the closest are kept
    assert not reached and names == [f"{kv}@0.875", f"{p}@0.5 | {kv}@0.75"]
    del found[f"{kv}@0.875"]
    assert pool(found, 0.95, 0.01) == ([f"{p}@0.5 | {kv}@0.75"], False)
    assert pool({f"{kv}@0.7": fig(f"{kv}@0.7", 1, 3.9)}, 0.75, 0.01) == ([f"{kv}@0.7"], True)  # within tolerance
    assert ranked(["b", "a", "c"], {"a": fig("a", 50, 2), "b": fig("b", 60, 2), "c": fig("c", 50, 3)}) == \
        ["b", "c", "a"]


def test_tune_reports_on_samples_it_never_tuned_on(tmp_path):
    config = small(tmp_path, targets=[0.5, 0.75, 0.99])
    result = tune(config)
    tuned = read_rows(tmp_path / "t" / "tune" / "rows.jsonl")
    reported = read_rows(tmp_path / "t" / "report" / "rows.jsonl")
    assert {r["seed"] for r in tuned} == {0} and {r["seed"] for r in reported} == {1}
    picks = {r["spec"] for r in result["races"]}
    assert {r["method"] for r in reported} == picks | {"none"}
    from tokenzip.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    assert not sample_fingerprints(config, 0, 3, tok) & sample_fingerprints(config, 1, 2, tok)
    for race in result["races"]:
        assert race["report"]["n"] == 2 and race["tune"]["n"] <= 3
        assert race["reached"] == (race["target"] < 0.99)
        if race["bracket"] == "single":
            assert " | " not in race["spec"]
        if race["bracket"] == "composed":
            assert " | " in race["spec"]
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["races"] == result["races"]


def test_tune_refuses_to_report_on_a_tuning_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(tune_module, "sample_fingerprints", lambda *args: {"the same sample"})
    with pytest.raises(AssertionError, match="a tuning sample is also a reported sample"):
        tune(small(tmp_path))
    assert not (tmp_path / "t").exists()


def test_tune_cli_prints_the_best_pipeline_and_the_frontier(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["tune", "--model", "tiny:llama", "--target", "0.75", "--tasks", "niah_single", "--context", "300",
                 "--stages", "prompt,kv", "--methods", "prompt:extractive", "kv:snapkv", "--grid", "prompt=0.5",
                 "kv=0.5,0.75", "--samples", "1", "--max-new-tokens", "2", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "target 4x (0.75 of the dense KV bytes removed): reached" in printed
    assert "best at 4x: " in printed and "frontier of the reported configurations" in printed
    assert (out / "report" / "report.md").exists()


# --- issue 23, items 5 and 6 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, words", [
    (dict(tolerance=-1.0), ["--tolerance", "0 <= tolerance < 1", "-1.0"]),
    (dict(tolerance=float("nan")), ["--tolerance", "nan"]),
    (dict(tolerance=1.0), ["--tolerance"]),
    (dict(tune_samples=0), ["--tune-samples", ">= 1", "got 0"]),  # was silently --samples
    (dict(grid={"layers": [0.5]}), ["--grid gives ratios for layers", "not in --stages"]),
])
def test_tune_settings_that_mean_nothing_are_refused(tmp_path, overrides, words):
    with pytest.raises(TokenzipError) as info:
        small(tmp_path, **overrides).validate()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_stage_given_twice_in_the_grid_is_refused(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["tune", "--model", "tiny:llama", "--target", "0.5", "--grid", "kv=0.5", "kv=0.75", "--stages", "kv",
                 "--out", str(out)]) == 2
    assert "--grid gives kv twice" in capsys.readouterr().err and not out.exists()


def test_a_method_given_twice_is_one_option(tmp_path):
    """Item 6: ``--methods kv:snapkv kv:snapkv`` built every candidate with it twice (104 instead of 59)."""
    once = small(tmp_path)
    twice = small(tmp_path, methods={"prompt": ["prompt:extractive", "extractive"],
                                     "kv": ["kv:snapkv", "kv:snapkv", "kv:snapkv:window_size=64"]})
    once.validate()
    twice.validate()
    assert candidates(twice) == candidates(once) and len(candidates(once)) == 2 * 3 - 1


def test_candidates_that_cannot_run_are_skipped_before_any_work(tmp_path):
    """Item 5: fastv (protecting 4 + 32 tokens) after prompt@0.9375 on a 300-token context gets ~19 tokens; that
    aborted the whole search mid-run. It is skipped with its reason before any work; the others are searched."""
    config = small(tmp_path, stages=["prompt", "layers"], methods={"prompt": ["extractive"], "layers": ["fastv"]},
                   grid={"prompt": [0.5, 0.9375], "layers": [0.25]})
    config.validate()
    specs = candidates(config)
    assert "prompt:extractive@0.9375 | layers:fastv@0.25" not in specs
    assert "prompt:extractive@0.5 | layers:fastv@0.25" in specs and len(specs) == 4
    why = tune_module.runnable("prompt:extractive@0.9375 | layers:fastv@0.25", [300])
    assert "fastv protects 4 + 32 tokens" in why and "leaves about 19 of a 300-token context" in why
    assert tune_module.runnable("layers:fastv@0.25", [30]) is not None


def test_a_candidate_refused_during_the_search_is_skipped_and_the_search_goes_on(tmp_path, monkeypatch):
    """A refusal no check before the run foresees (here: one candidate made to fail on its first sample) skips that
    candidate with its message; the others are measured and picked as before."""
    from tokenzip.bench.stages import pipeline as pipeline_stage

    bad = "kv:snapkv@0.75"
    real = pipeline_stage.run

    def failing(worker, sample, prompt, pairs):
        if any(spec == bad for spec, _ in pairs):
            raise TokenzipError("refused for the test")
        yield from real(worker, sample, prompt, pairs)

    monkeypatch.setattr(pipeline_stage, "run", failing)
    log = io.StringIO()
    result = tune(small(tmp_path, targets=[0.5]), log=log)
    assert result["skipped"] == {bad: "refused for the test"}
    assert bad not in {r["spec"] for r in result["races"]} and result["races"]
    assert f"tune: skipped {bad}: refused for the test" in log.getvalue()
