"""The runner on tiny models: rows, resuming, configuration checks, shared prefill, stages, bad input."""

from __future__ import annotations

import json

import pytest

import tokenzip as tz
from tokenzip.bench.rows import read_rows
from tokenzip.bench.runner import BenchConfig
from tokenzip.errors import TokenzipError

TIMING = {"prefill_seconds", "compress_seconds", "decode_seconds", "decode_tokens_per_second", "peak_rss_bytes",
          "peak_cuda_bytes", "rss_peak_scope", "time", "pid", "host", "device", "git_commit",
          "prefill_peak_rss_bytes", "decode_peak_rss_bytes", "prefill_peak_cuda_bytes", "decode_peak_cuda_bytes",
          "rss_start_bytes", "first_token_seconds"}


def small_run(out, loaded, **overrides):
    kwargs = dict(model="tiny:llama", stage="kv", methods=["snapkv", "streaming_llm"], ratios=[0.5],
                  tasks=["niah_single"], context=300, samples=2, out=out, max_new_tokens=3, progress=False,
                  summary=False, loaded=loaded)
    kwargs.update(overrides)
    return tz.bench.run(**kwargs)


def comparable(rows):
    return {r["key"]: {k: v for k, v in r.items() if k not in TIMING} for r in rows}


def test_rows_hold_every_measurement(tmp_path, tiny_llama):
    rows = small_run(tmp_path / "run", tiny_llama)
    assert len(rows) == 2 * 3  # 2 samples x (none + 2 methods)
    assert {(r["method"], r["ratio"]) for r in rows} == {("none", 0.0), ("snapkv", 0.5), ("streaming_llm", 0.5)}
    for r in rows:
        assert r["model"] == "tiny:llama" and r["seed"] == 0 and r["versions"]["torch"] and r["device"]
        assert "git_commit" in r and r["warmed_up"] is True
        assert r["tokens_in"] > 290 and r["prefill_seconds"] > 0 and r["decode_seconds"] > 0
        assert r["peak_rss_bytes"] > 0 and r["cache_bytes"] > 0 and len(r["predictions"]) == 1
        assert 0.0 <= r["score"] <= 1.0 and r["new_tokens"] <= 3
        if r["method"] == "none":
            assert r["achieved_ratio"] == 0 and r["cache_bytes"] == r["cache_bytes_before"]
        else:
            assert r["achieved_ratio"] == pytest.approx(0.5, abs=0.01)
            assert r["cache_bytes"] < r["cache_bytes_before"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["identity"]["model"] == "tiny:llama"


def test_resume_skips_finished_rows_and_grows_the_grid(tmp_path, tiny_llama, capsys):
    out = tmp_path / "run"
    first = small_run(out, tiny_llama, methods=["snapkv"])
    text = (out / "rows.jsonl").read_text()
    again = small_run(out, tiny_llama, methods=["snapkv"])
    assert (out / "rows.jsonl").read_text() == text and again == first
    assert "4 rows already in" in capsys.readouterr().err
    # an interrupted write leaves half a line: it is ignored, kept, and new rows start on a new line
    with open(out / "rows.jsonl", "a") as f:
        f.write('{"key": "half a ro')
    grown = small_run(out, tiny_llama, methods=["snapkv", "knorm"], samples=3)
    assert len(grown) == 3 * 3
    assert (out / "rows.jsonl").read_text().startswith(text)
    assert comparable(grown[:4]) == comparable(first)


def test_a_directory_of_another_configuration_is_refused(tmp_path, tiny_llama):
    out = tmp_path / "run"
    small_run(out, tiny_llama, methods=["snapkv"], samples=1)
    before = (out / "rows.jsonl").read_bytes()
    with pytest.raises(TokenzipError, match="different configuration .*seed: 0 there vs 1 now"):
        small_run(out, tiny_llama, seed=1)
    with pytest.raises(TokenzipError, match="model: 'tiny:llama' there vs 'tiny:qwen2' now"):
        small_run(out, tiny_llama, model="tiny:qwen2")
    with pytest.raises(TokenzipError, match="unknown model 'gemma-270m'.*gemma-3-270m"):  # the name, not the dir
        small_run(out, tiny_llama, model="gemma-270m")
    assert (out / "rows.jsonl").read_bytes() == before


def test_bad_input_fails_before_any_work(tmp_path, tiny_llama):
    out = tmp_path / "run"
    with pytest.raises(TokenzipError, match="unknown kv method 'snapk'"):
        small_run(out, tiny_llama, methods=["snapk"])
    with pytest.raises(TokenzipError, match="unknown task 'niah'"):
        small_run(out, tiny_llama, tasks=["niah"])
    with pytest.raises(TokenzipError, match="ratio is the fraction"):
        small_run(out, tiny_llama, ratios=[1.5])
    with pytest.raises(TokenzipError, match="has no parameter 'window'"):
        small_run(out, tiny_llama, methods=["snapkv:window=3"])
    with pytest.raises(TokenzipError, match="allows 4096; ask for a shorter --context"):
        small_run(out, tiny_llama, context=4090)
    with pytest.raises(TokenzipError, match="does not exist"):
        small_run(out, tiny_llama, tasks_file=str(tmp_path / "nope.jsonl"))
    assert not (out / "rows.jsonl").exists() or not read_rows(out / "rows.jsonl")


def test_grid_skips_methods_that_do_nothing_at_ratio_zero():
    config = BenchConfig(model="tiny:llama", methods=["snapkv", "kivi", "none"], ratios=[0.0], tasks=["vt"])
    assert config.pairs() == [("none", 0.0), ("kivi", 0.0)]  # kivi quantizes at ratio 0: measured


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_shared_prefill_gives_the_one_by_one_results(tmp_path, family):
    """One prefill serving every method and ratio == a prefill per method (tz.kv.answer)."""
    from tokenzip.testing import tiny_model

    loaded = tiny_model(family)
    methods = ["snapkv", "h2o", "kvzip", "tova", "knorm", "adakv:base=snapkv", "kivi:evict=snapkv"]
    common = dict(methods=methods, ratios=[0.25, 0.6], tasks=["niah_single", "qa:questions=2,facts=3"], samples=1,
                  context=320, model=f"tiny:{family}")
    shared = small_run(tmp_path / "shared", loaded, **common)
    alone = small_run(tmp_path / "alone", loaded, shared_prefill=False, **common)
    assert len(shared) == len(alone) == 2 * (1 + 2 * len(methods))
    ignore = TIMING | {"shared_prefill"}
    a = {r["key"]: {k: v for k, v in r.items() if k not in ignore} for r in shared}
    b = {r["key"]: {k: v for k, v in r.items() if k not in ignore} for r in alone}
    assert a == b


def test_export_tasks_reads_back_as_the_same_prompts(tmp_path, tiny_llama):
    path = tmp_path / "tasks.jsonl"
    n = tz.bench.export_tasks(path, model="tiny:llama", tasks=["niah_single", "qa:questions=2"], context=300,
                              samples=2, tokenizer=tiny_llama[1])
    assert n == 2 + 4
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["formatted"] is True and lines[0]["question"].startswith("\nQuestion: ")
    generated = small_run(tmp_path / "generated", tiny_llama, tasks=["niah_single", "qa:questions=2"])
    from_file = small_run(tmp_path / "file", tiny_llama, tasks_file=str(path))
    ignore = TIMING | {"tasks_file_sha256", "metadata"}
    assert {r["key"]: {k: v for k, v in r.items() if k not in ignore} for r in generated} == \
        {r["key"]: {k: v for k, v in r.items() if k not in ignore} for r in from_file}


def test_prompt_stage(tmp_path, tiny_llama):
    rows = small_run(tmp_path / "run", tiny_llama, stage="prompt", methods=["tail", "llmlingua"], ratios=[0.5],
                     tasks=["qa:facts=2"], samples=1, context=400)
    by = {r["method"]: r for r in rows}
    assert by["none"]["tokens_kept"] == by["none"]["tokens_in"]
    for name in ("tail", "llmlingua"):
        assert by[name]["achieved_ratio"] == pytest.approx(0.5, abs=0.03)
        assert by[name]["cache_bytes"] < 0.6 * by["none"]["cache_bytes"]
    with pytest.raises(TokenzipError, match="measures the kv and layers stages"):
        small_run(tmp_path / "ppl", tiny_llama, stage="prompt", methods=["tail"], tasks=["perplexity"], samples=1,
                  context=300)


def test_layers_stage_on_a_decoder(tmp_path, tiny_llama):
    rows = small_run(tmp_path / "run", tiny_llama, stage="layers", methods=["fastv", "layers.random"], ratios=[0.5],
                     tasks=["niah_single"], samples=1, context=300)
    by = {r["method"]: r for r in rows}
    assert by["none"]["tokens_kept"] == by["none"]["tokens_in"]
    assert by["fastv"]["tokens_kept"] < by["fastv"]["tokens_in"] and by["fastv"]["achieved_ratio"] > 0.3
    assert by["fastv"]["compute_fraction"] < 1.0


def test_perplexity_on_kv_and_layers(tmp_path, tiny_llama):
    for stage, methods in (("kv", ["streaming_llm", "snapkv"]), ("layers", ["fastv"])):
        rows = small_run(tmp_path / stage, tiny_llama, stage=stage, methods=methods, ratios=[0.5],
                         tasks=["perplexity:continuation=32"], samples=1, context=300)
        by = {r["method"]: r for r in rows}
        assert all(r["task_kind"] == "perplexity" and r["score"] == r["nll"] > 0 for r in rows)
        assert by["none"]["tokens_scored"] == by[methods[0]]["tokens_scored"] > 20
        assert by[methods[0]]["nll"] != by["none"]["nll"]


def test_ratio_zero_of_kv_methods_answers_like_the_uncompressed_model(tmp_path, tiny_llama):
    """A method at a budget above the context length keeps everything: its answers equal the baseline's."""
    rows = small_run(tmp_path / "run", tiny_llama, methods=["snapkv:window_size=8"], ratios=[0.001],
                     tasks=["niah_single"], samples=2, max_new_tokens=6)
    by = {(r["sample"], r["method"]): r for r in rows}
    for sample in (0, 1):
        assert by[(sample, "snapkv:window_size=8")]["predictions"] == by[(sample, "none")]["predictions"]


def test_embedding_fidelity_on_an_encoder(tmp_path):
    from tokenzip.testing import tiny_model

    loaded = tiny_model("bert")
    rows = small_run(tmp_path / "run", loaded, model="tiny:bert", stage="layers", methods=["tome"], ratios=[0.5],
                     tasks=["embedding:corpus=12"], samples=1, context=40)
    by = {r["method"]: r for r in rows}
    assert by["none"]["cosine"] == pytest.approx(1.0) and by["none"]["neighbours"] == 1.0
    assert by["tome"]["cosine"] < 1.0 and by["tome"]["tokens_kept"] < by["tome"]["tokens_in"]


def test_an_interrupted_run_keeps_its_finished_rows_and_resumes(tmp_path, tiny_llama, monkeypatch):
    import tokenzip.bench.stages.kv as kv_stage

    real, calls = kv_stage.answer_from, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a sample's methods
        return real(*args, **kwargs)

    monkeypatch.setattr(kv_stage, "answer_from", failing)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        small_run(out, tiny_llama, warmup=False)
    written = read_rows(out / "rows.jsonl")
    assert [r["method"] for r in written] == ["none", "snapkv"]  # measured before the interruption: kept
    monkeypatch.setattr(kv_stage, "answer_from", real)
    rows = small_run(out, tiny_llama, warmup=False)
    assert len(rows) == 6 and comparable(rows[:2]) == comparable(written)


def test_a_failed_start_does_not_lock_the_directory(tmp_path, tiny_llama):
    out = tmp_path / "run"
    with pytest.raises(TokenzipError, match="shorter --context"):
        small_run(out, tiny_llama, context=4090)  # config.json written, no rows
    assert len(small_run(out, tiny_llama, seed=5, samples=1)) == 3  # another configuration may use it
    with pytest.raises(TokenzipError, match="methods and tasks are lists"):
        small_run(out, tiny_llama, seed=5, methods="snapkv")


def tasks_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_tasks_file_with_an_index_on_two_contexts_is_refused_before_any_row(tmp_path, tiny_llama):
    """Both contexts would get the row key 'file|0|0': after an interruption the second would be skipped."""
    rows = [{"context": "The key is 41. " * 5, "question": "Key?", "answer": "41", "index": 0},
            {"context": "The key is 93. " * 5, "question": "Key?", "answer": "93", "index": 0}]
    out = tmp_path / "run"
    with pytest.raises(TokenzipError, match="lines 1 and 2: two different contexts"):
        small_run(out, tiny_llama, tasks_file=tasks_file(tmp_path / "file.jsonl", rows))
    assert not read_rows(out / "rows.jsonl")


def test_every_sample_of_a_tasks_file_survives_an_interrupted_run(tmp_path, tiny_llama, monkeypatch):
    import tokenzip.bench.stages.kv as kv_stage

    rows = [{"context": f"The key is {n}. " * 5, "question": "Key?", "answer": str(n)} for n in (41, 93, 57)]
    path = tasks_file(tmp_path / "file.jsonl", rows)
    real, calls = kv_stage.answer_from, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(kv_stage, "answer_from", failing)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        small_run(out, tiny_llama, tasks_file=path, methods=["snapkv"], warmup=False)
    monkeypatch.setattr(kv_stage, "answer_from", real)
    done = small_run(out, tiny_llama, tasks_file=path, methods=["snapkv"], warmup=False)
    assert len(done) == 3 * 2 and len({r["key"] for r in done}) == 6
    assert sorted({r["answers"][0][0] for r in done}) == ["41", "57", "93"]


def test_a_huge_tasks_file_context_is_refused_before_it_is_tokenized(tmp_path, tiny_llama):
    rows = [{"context": "word " * 400_000, "question": "Q?", "answer": "a"}]
    path = tasks_file(tmp_path / "big.jsonl", rows)
    with pytest.raises(TokenzipError, match=r"2,000,000 characters; its first 65,552 alone are .* more than the "
                                            r"4,096 positions .*shorten the context on line 1 of the tasks file"):
        small_run(tmp_path / "run", tiny_llama, tasks_file=path)
    rows = [{"context": "word " * 4000, "question": "Q?", "answer": "a"}]  # short enough to count whole
    with pytest.raises(TokenzipError, match="allows 4096; shorten the context on line 1 of the tasks file"):
        small_run(tmp_path / "run", tiny_llama, tasks_file=tasks_file(tmp_path / "long.jsonl", rows))


def test_a_damaged_rows_file_is_resumed_with_warnings(tmp_path, tiny_llama, caplog):
    out = tmp_path / "run"
    first = small_run(out, tiny_llama, methods=["snapkv"])
    with open(out / "rows.jsonl", "ab") as f:
        f.write(b'{"key": "caf\xe9 latin-1"}\n')  # bytes that are not UTF-8
        f.write(b'{"key": ["not", "a", "string"]}\n')
    with caplog.at_level("WARNING"):
        again = small_run(out, tiny_llama, methods=["snapkv"])
    assert comparable(again) == comparable(first)
    assert "rows.jsonl, line 5: not UTF-8 text" in caplog.text


def test_a_method_or_ratio_given_twice_is_measured_once():
    """Issue 23, item 6: ``--ratios 0.5 0.5`` or ``--methods snapkv snapkv`` wrote two rows with one key (the
    report then showed n=2 for one sample)."""
    config = BenchConfig(model="tiny:llama", methods=["snapkv", "snapkv", " snapkv", "knorm"], ratios=[0.5, 0.5, 0.25],
                         tasks=["vt"])
    config.validate()
    assert config.pairs() == [("none", 0.0), ("snapkv", 0.5), ("snapkv", 0.25), ("knorm", 0.5), ("knorm", 0.25)]


def test_a_lone_surrogate_in_a_tasks_file_is_refused_with_its_line(tmp_path, tiny_llama):
    """Issue 23, item 3: JSON's escaped lone surrogate (half a character) gave a TypeError traceback."""
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"context": "ok text", "question": "q?", "answer": "a"}\n'
                    '{"context": "abc \\ud800 def", "question": "q?", "answer": "a"}\n')
    with pytest.raises(TokenzipError, match=r"line 2: field context holds text that is not valid Unicode"):
        small_run(tmp_path / "run", tiny_llama, tasks_file=str(path))
