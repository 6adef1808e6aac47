"""The task kind registry: every kind a task names is declared, and rows of unknown or mixed kinds read plainly."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tokenzip.bench.kinds import TaskKind, get_kind, register_kind
from tokenzip.bench.kinds.base import kind_of
from tokenzip.bench.tasks import TASKS, Task, list_tasks, register_task
from tokenzip.errors import TokenzipError


def test_every_task_names_a_declared_kind():
    for task in list_tasks():
        assert get_kind(task["kind"]).name == task["kind"]


def test_unknown_kinds():
    with pytest.raises(TokenzipError, match="qa_f1"):  # the message lists the known kinds
        get_kind("qa_f2")
    assert kind_of(["qa", "perplexity"]) == TaskKind("mixed")
    assert kind_of(["someday"]) == TaskKind("someday")
    assert kind_of(["qa"]) is get_kind("qa")


def test_registration_is_checked():
    with pytest.raises(TypeError, match="score function"):
        register_kind(TaskKind("unscored"))
    with pytest.raises(TypeError, match="registered twice"):
        register_kind(TaskKind("qa", score=lambda sample, measurement: {"score": 0.0}))

    @dataclass
    class Odd(Task):
        name = "odd_kind_task"
        description = "a task of a kind nobody declared"
        kind = "odd"

    with pytest.raises(TokenzipError, match="task kind"):
        register_task(Odd)
    assert "odd_kind_task" not in TASKS


def test_a_kind_declares_its_aggregation():
    """Scores combine with the kind's aggregation (here the median), the summary and ``vs none`` alike."""
    import statistics

    from tokenzip.bench.aggregate import aggregate
    from tokenzip.bench.kinds.base import KINDS

    register_kind(TaskKind("median_example", score=lambda sample, m: {"score": 0.0}, scale=100.0,
                           aggregation=statistics.median))
    try:
        def row(method, sample, score):
            return {"key": f"t|64|{sample}|{method}", "task": "t", "task_kind": "median_example", "length": 64,
                    "sample": sample, "method": method, "ratio": 0.0 if method == "none" else 0.5, "score": score}

        rows = [row("none", i, s) for i, s in enumerate([1.0, 1.0, 0.0])]
        rows += [row("snapkv", i, s) for i, s in enumerate([0.0, 0.5, 0.5])]  # mean 1/3, median 1/2
        by_method = {e["method"]: e for e in aggregate(rows)}
        assert by_method["none"]["score"] == 100.0 and by_method["snapkv"]["score"] == 50.0
        assert by_method["snapkv"]["vs none"] == 50.0  # median 0.5 against the uncompressed median 1.0
        assert get_kind("qa").aggregation([0.0, 0.5, 0.5]) == 1 / 3  # every other kind: the mean
    finally:
        KINDS.remove("median_example")
