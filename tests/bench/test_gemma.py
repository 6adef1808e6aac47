"""Real weights: tasks sized in Gemma's tokenizer, and a small kv sweep on Gemma 3 270M."""

from __future__ import annotations

import pytest

import tokenzip as tz
from tokenzip.bench.tasks import build_sample, get_task

pytestmark = pytest.mark.slow

TASKS = ["niah_single", "niah_single:haystack=prose", "niah_single:haystack=uuids,value=uuid",
         "niah_single:haystack=numbers", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe",
         "kv_retrieval", "qa", "perplexity"]


@pytest.mark.parametrize("length", [1024, 4096])
def test_every_task_hits_the_length_in_gemma_tokens(gemma, length):
    _, tok = gemma

    def count(text):
        return len(tok(text, add_special_tokens=False).input_ids)

    for spec in TASKS:
        sample = build_sample(get_task(spec), count, length, 0, seed=0)
        assert abs(count(sample.context) - length) <= 0.02 * length, spec


def test_gemma_answers_needles_and_kvzip_keeps_them(gemma, tmp_path):
    rows = tz.bench.run(model="gemma-3-270m", stage="kv", methods=["kvzip", "streaming_llm"], ratios=[0.5],
                        tasks=["niah_single"], context=1024, samples=2, out=tmp_path / "run", loaded=gemma,
                        max_new_tokens=10, progress=False, summary=False)
    by = {(r["method"], r["sample"]): r for r in rows}
    assert len(rows) == 6
    assert by[("none", 0)]["score"] == by[("none", 1)]["score"] == 1.0  # the model finds the needle at 1k
    assert by[("kvzip", 0)]["score"] == 1.0
    for r in rows:
        assert r["tokens_in"] == pytest.approx(1025, abs=21) and r["device"].startswith("cpu")
    assert by[("kvzip", 0)]["achieved_ratio"] == pytest.approx(0.5, abs=0.01)
