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
