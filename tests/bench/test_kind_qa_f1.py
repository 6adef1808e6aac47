"""The ``qa_f1`` kind (LongBench's token F1): exact scores, the rows it writes, and how the report reads them."""

from __future__ import annotations

import pytest

import tokenzip as tz
from tokenzip.bench.aggregate import aggregate
from tokenzip.bench.kinds import get_kind
from tokenzip.bench.kinds.qa_f1 import answer_words, token_f1
from tokenzip.bench.report import summary_table, write_report
from tokenzip.bench.rows import write_rows
from tokenzip.bench.tasks import Question, Sample, build_sample, get_task, list_tasks
from tokenzip.bench.tasks.jsonl import read_tasks_file


def test_words_are_normalised_as_longbench_does():
    assert answer_words("The Red-Car, an  apple; A pear!") == ["redcar", "apple", "pear"]


@pytest.mark.parametrize(("prediction", "answers", "f1"), [
    ("Morkin", ["Morkin"], 1.0),
    ("The Morkin!", ["morkin"], 1.0),  # case, punctuation and articles do not count
    ("He was born in Morkin.", ["Morkin"], 1 / 3),  # precision 1/5, recall 1
    ("Morkin", ["the town of Morkin"], 1 / 2),  # precision 1, recall 1/3 ("the" removed, "of" kept)
    ("red red car", ["red car car"], 2 / 3),  # shared words as a multiset: one red and one car
    ("a blue whale", ["whale", "blue whale"], 1.0),  # the best reference counts
    ("Dravel", ["Morkin"], 0.0),
    ("", ["Morkin"], 0.0),
    ("Morkin", [], 0.0),
])
def test_token_f1(prediction, answers, f1):
    assert token_f1(prediction, answers) == pytest.approx(f1, abs=1e-12)


def _sample(index, answer):
    return Sample(task="qa_f1", length=64, index=index, context="...", questions=[Question("Where?", [answer])],
                  metric="f1", kind="qa_f1")


# (answer, uncompressed prediction, compressed prediction): F1 1 and 2/3, 1 and 1, 1/2 and 0
CASES = [("Morkin", "Morkin.", "Morkin, a town"), ("baker", "baker", "A baker"), ("1723", "It was 1723", "1724")]


def _rows():
    kind, rows = get_kind("qa_f1"), []
    for index, (answer, plain, compressed) in enumerate(CASES):
        for method, ratio, prediction in (("none", 0.0, plain), ("snapkv", 0.5, compressed)):
            scored = kind.score(_sample(index, answer), {"predictions": [prediction]})
            rows.append({"key": f"qa_f1|64|{index}|{method}|{ratio:g}", "engine": "tokenzip", "task": "qa_f1",
                         "task_kind": "qa_f1", "length": 64, "sample": index, "metric": "f1", "metadata": {},
                         **scored, "method": method, "ratio": ratio, "predictions": [prediction]})
    return rows


def test_rows_record_each_question_score():
    rows = {r["key"]: r for r in _rows()}
    compressed = rows["qa_f1|64|0|snapkv|0.5"]
    assert compressed["answers"] == [["Morkin"]] and compressed["scores"] == [pytest.approx(2 / 3)]
    assert compressed["score"] == pytest.approx(2 / 3)


def test_report_reads_f1_as_declared(tmp_path):
    kind = get_kind("qa_f1")
    assert kind.higher_is_better and kind.percent and kind.retention
    rows = _rows()
    by = {e["method"]: e for e in aggregate(rows)}
    assert by["none"]["score"] == pytest.approx(100 * 2.5 / 3)
    assert by["snapkv"]["score"] == pytest.approx(100 * (2 / 3 + 1) / 3)
    assert by["snapkv"]["vs none"] == pytest.approx(100 * (5 / 3) / 2.5)  # % of the uncompressed mean
    assert by["snapkv"]["retention"] == pytest.approx(100 * (2 / 3 + 1) / 2)  # on samples none got fully right
    table = summary_table(rows, markdown=True).splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    snapkv = next(dict(zip(head, (c.strip() for c in line.strip("|").split("|")))) for line in table
                  if line.startswith("| snapkv"))
    assert (snapkv["score"], snapkv["vs none"], snapkv["retention"]) == ("55.6", "66.7", "83.3")
    write_rows(tmp_path / "rows.jsonl", rows)
    markdown = write_report(tmp_path, with_plots=False)["markdown"].read_text()
    assert "## Summary: score (%, token F1)" in markdown


def test_the_qa_f1_task_uses_the_kind(tiny_count):
    sample = build_sample(get_task("qa_f1"), tiny_count, 400, 0, seed=0)
    assert (sample.kind, sample.metric) == ("qa_f1", "f1")
    assert sample.context.count(sample.questions[0].answers[0]) == 1
    listed = next(t for t in list_tasks() if t["task"] == "qa_f1")
    assert (listed["kind"], listed["metric"]) == ("qa_f1", "f1")


def test_a_tasks_file_asks_for_f1(tmp_path):
    rows = [{"context": "Dravel was born in Morkin.", "question": "Where?", "answer": "Morkin", "metric": "f1"},
            {"context": "Ilsa bakes bread.", "question": "Job?", "answer": "baker"}]
    write_rows(tmp_path / "mine.jsonl", rows)
    f1, default = read_tasks_file(tmp_path / "mine.jsonl")
    assert (f1.kind, f1.metric) == ("qa_f1", "f1") and (default.kind, default.metric) == ("qa", "part")


def test_a_run_scores_qa_f1_rows(tmp_path, tiny_llama):
    rows = tz.bench.run(model="tiny:llama", methods=["snapkv"], ratios=[0.5], tasks=["qa_f1"], context=400,
                        samples=1, out=tmp_path / "run", max_new_tokens=4, progress=False, summary=False,
                        loaded=tiny_llama)
    assert len(rows) == 2
    for r in rows:
        assert (r["task_kind"], r["metric"]) == ("qa_f1", "f1")
        assert r["scores"] == [token_f1(p, a) for p, a in zip(r["predictions"], r["answers"])]
        assert r["score"] == sum(r["scores"]) / len(r["scores"])
