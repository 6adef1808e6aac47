"""`tokenzip bench --pipeline`: rows whose stage counts chain, shared work equal to one-by-one runs, the report's
pipeline part (savings by stage, a frontier of non-dominated points), bad specs refused before any work."""

from __future__ import annotations

import json

import pytest
import torch

import tokenzip as tz
from tokenzip.bench.aggregate import configurations, frontier
from tokenzip.bench.stages.pipeline import SharedScorer
from tokenzip.cli import main
from tokenzip.errors import TokenzipError
from tokenzip.models.cache_layers import dense_cache_bytes, dense_cache_entries
from tokenzip.prompt.scorer import CausalScorer

THREE = "prompt:extractive@0.5 | layers:fastv@0.3 | kv:snapkv@0.5"
TWO = "prompt:extractive@0.5 | kv:snapkv@0.5"
ONE = "kv:snapkv@0.5"


def pipeline_run(out, loaded, specs, **overrides):
    kwargs = dict(model="tiny:llama", stage="pipeline", methods=specs, tasks=["niah_single"], context=300, samples=2,
                  out=out, max_new_tokens=3, progress=False, summary=False, loaded=loaded)
    kwargs.update(overrides)
    return tz.bench.run(**kwargs)


def _stages(row):
    return {s["stage"]: s for s in row["pipeline"]["stages"]}


def test_rows_carry_stage_counts_that_chain(tmp_path, tiny_llama):
    model, tok = tiny_llama
    rows = pipeline_run(tmp_path / "run", tiny_llama, [THREE, TWO, ONE])
    assert {r["method"] for r in rows} == {"none", THREE, TWO, ONE} and len(rows) == 8
    for r in rows:
        report, stages, by = r["pipeline"], _stages(r), r["bytes_by_stage"]
        assert r["stage"] == "pipeline" and r["ratio"] == 0.0 and report["spec"] == r["method"]
        assert by["dense"] == report["dense_bytes"] == dense_cache_bytes(model, report["context_tokens"])
        assert r["cache_bytes"] == report["bytes_held"] == list(by.values())[-1]
        assert r["achieved_ratio"] == pytest.approx(1 - report["bytes_held"] / report["dense_bytes"])
        assert report["kv_compression"] == pytest.approx(report["dense_bytes"] / report["bytes_held"])
        if r["method"] == "none":
            assert stages == {} and report["kv_compression"] == 1.0
            continue
        kv = stages["kv"]
        assert kv["after"] == report["entries_held"] < kv["before"] and kv["bytes_after"] == by["kv"]
        if "prompt" in stages:
            prompt = stages["prompt"]
            assert prompt["before"] == report["context_tokens"] and prompt["after"] < prompt["before"]
            assert by["prompt"] == dense_cache_bytes(model, int(prompt["after"])) < by["dense"]
        if "layers" in stages:  # tokens out of the prompt stage go into the layers stage, its entries into kv
            layers = stages["layers"]
            assert layers["before"] == stages["prompt"]["after"] and layers["after"] < layers["before"]
            assert kv["before"] == layers["entries_after"] and by["layers"] == layers["bytes_after"] < by["prompt"]
        elif "prompt" in stages:  # no layers stage: the kv stage gets the dense cache of the shorter text
            assert kv["before"] == dense_cache_entries(model, int(stages["prompt"]["after"]))
        assert by["kv"] < list(by.values())[-2]
    composed = {r["method"]: r["pipeline"]["kv_compression"] for r in rows if r["sample"] == 0}
    assert composed[THREE] > composed[TWO] > composed[ONE] > 1


def test_shared_work_gives_the_one_by_one_results(tmp_path, tiny_llama):
    together = pipeline_run(tmp_path / "together", tiny_llama, [THREE, TWO, "prompt:extractive@0.75"])
    alone = [r for i, spec in enumerate((TWO, THREE)) for r in pipeline_run(tmp_path / str(i), tiny_llama, [spec])]

    def comparable(rows):
        out = {}
        for r in rows:
            if r["method"] in (TWO, THREE):
                stages = [{k: v for k, v in s.items() if k != "seconds"} for s in r["pipeline"]["stages"]]
                out[r["key"]] = (r["predictions"], r["bytes_by_stage"], stages)
        return out

    assert comparable(together) == comparable(alone)


def test_the_shared_scorer_scores_a_sequence_once_and_charges_its_time(tiny_llama):
    model, tok = tiny_llama
    shared = SharedScorer(model, tok)
    sequences = [([5, 6, 7], [8, 9]), ([10], [11, 12, 13])]
    first = shared.surprisal(sequences)
    assert shared.forwards == 1 and shared.charged == 0
    again = shared.surprisal(sequences[::-1] + [([1], [2])])
    assert shared.forwards == 2 and shared.charged > 0  # only the new sequence was run
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])
    fresh = CausalScorer(model, tok).surprisal(sequences)
    assert all(torch.allclose(a, b) for a, b in zip(first, fresh))


def test_query_aware_rows(tmp_path, tiny_llama):
    rows = pipeline_run(tmp_path / "run", tiny_llama, [TWO], samples=1, query_aware=True)
    assert len(rows) == 2 and all(r["query_aware"] for r in rows)
    composed = next(r for r in rows if r["method"] == TWO)
    assert list(_stages(composed)) == ["prompt", "kv"] and composed["pipeline"]["kv_compression"] > 1


def test_report_shows_single_and_composed_with_a_frontier_of_non_dominated_points(tmp_path, tiny_llama):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    pipeline_run(out, tiny_llama, [ONE, TWO], samples=1)
    written = tz.bench.write_report(out)
    markdown = (out / "report.md").read_text()
    section = markdown.split("## Pipelines: where the savings came from")[1]
    assert "| kv:snapkv@0.5 " in section and "| prompt:extractive@0.5 \\| kv:snapkv@0.5 " in section
    assert written["savings_by_stage"].read_bytes().startswith(b"\x89PNG")
    assert written["score_vs_compression"].read_bytes().startswith(b"\x89PNG")
    assert "<td>prompt:extractive@0.5 | kv:snapkv@0.5</td>" in (out / "report.html").read_text()
    _check_frontier(configurations(tz.bench.load_rows(out)))


def _row(spec, sample, score, dense, *held):
    stages = [s.split(":")[0] for s in spec.split(" | ")] if spec != "none" else []
    by = {"dense": dense, **dict(zip(stages, held))}
    return {"key": f"t|100|{sample}|{spec}|0", "method": spec, "ratio": 0.0, "score": score, "task": "t",
            "length": 100, "sample": sample, "task_kind": "qa", "pipeline": {"spec": spec}, "bytes_by_stage": by}


def _check_frontier(entries):
    points = [(e["compression"], e["score"]) for e in entries]
    for e in entries:
        dominated = any(c >= e["compression"] and s >= e["score"] and (c, s) != (e["compression"], e["score"])
                        for c, s in points)
        assert e["frontier"] == (not dominated), e


def test_savings_and_frontier_are_the_hand_computed_ones():
    rows = []
    for sample, none in enumerate((1, 1)):
        rows += [_row("none", sample, none, 1000),
                 _row("kv:a@0.5", sample, 1, 1000, 500),                               # 2x, 100
                 _row("prompt:p@0.5", sample, sample, 1000, 400),                      # 2.5x, 50
                 _row("prompt:p@0.5 | kv:a@0.5", sample, 1, 1000, 400, 200),           # 5x, 100
                 _row("prompt:p@0.75 | kv:a@0.5", sample, 0, 1000, 250, 125)]          # 8x, 0
    by = {e["pipeline"]: e for e in configurations(rows)}
    composed = by["prompt:p@0.5 | kv:a@0.5"]
    assert composed["compression"] == 5.0 and composed["score"] == 100.0
    assert composed["shares"] == pytest.approx({"prompt": 0.6, "kv": 0.2, "held": 0.2})
    assert by["prompt:p@0.5"]["score"] == 50.0 and by["prompt:p@0.5"]["vs none"] == 50.0
    assert {p for p, e in by.items() if e["frontier"]} == {"prompt:p@0.5 | kv:a@0.5", "prompt:p@0.75 | kv:a@0.5"}
    _check_frontier(list(by.values()))
    assert frontier([(1, 100), (2, 100), (2, 50), (4, 0)]) == [(2, 100), (4, 0)]


def test_bad_specs_are_refused_before_any_work(tmp_path, tiny_llama, capsys):
    out = tmp_path / "run"
    with pytest.raises(TokenzipError, match="bad pipeline spec 'kv:snapkv@0.5 \\| kv:knorm@0.5': two kv methods"):
        pipeline_run(out, tiny_llama, [ONE, "kv:snapkv@0.5 | kv:knorm@0.5"])
    with pytest.raises(TokenzipError, match="unknown kv method 'snapk'"):
        pipeline_run(out, tiny_llama, ["kv:snapk@0.5"])
    assert not out.exists()
    assert main(["bench", "--model", "tiny:llama", "--pipeline", "prompt:extractive@1.5", "--out", str(out)]) == 2
    assert "bad ratio" in capsys.readouterr().err and not out.exists()
    assert main(["bench", "--model", "tiny:llama", "--pipeline", ONE, "--methods", "snapkv", "--out", str(out)]) == 2
    assert "--pipeline replaces --stage, --methods" in capsys.readouterr().err and not out.exists()


def test_cli_pipeline_run_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["bench", "--model", "tiny:llama", "--pipeline", ONE, "kv:snapkv@.5", "--tasks", "niah_single",
            "--context", "300", "--samples", "1", "--max-new-tokens", "2", "--threads", "1", "--no-warmup",
            "--out", str(out)]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["method"] for r in rows] == ["none", ONE]  # the two spellings are one canonical spec
    assert main(args) == 0 and "2 rows already in" in capsys.readouterr().err
