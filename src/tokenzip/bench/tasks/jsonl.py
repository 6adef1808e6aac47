"""User data as JSONL: one question per line, ``context``, ``question``, ``answer`` (+ ``answer_prefix``).

Optional fields: ``answer_prefix`` (text the answer starts with), ``task`` (a label; default: the
file's name), ``max_new_tokens`` (default 32), ``metric`` (``part``, the default: right when any
answer string is in the prediction; ``all``: the fraction of answer strings found; ``f1``: token F1, the
``qa_f1`` kind, LongBench's metric for QA). ``answer`` is a
string or a list of strings. Lines with the same task and context become one sample whose questions
are all answered from one prefill, like kvpress's grouping. Files written by ``tokenzip bench
--export-tasks`` carry ``"formatted": true``: their context and question are already the exact
text given to the model and are used as they are. ``length`` and ``index`` (integers >= 0) name a
sample in the rows (``task|length|index``): two different contexts may not share them (a resumed run
would take the second for the first), and a line without an index gets the next free one.
Every field is checked, with the line number, before any model runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenzip.bench.kinds.base import answer_metrics
from tokenzip.bench.tasks.base import Question, Sample
from tokenzip.errors import TokenzipError
from tokenzip.textio import check_text, read_text

_TYPE_NAMES = {str: "a string", list: "a list", int: "an integer", bool: "true or false"}


def _field(row: dict[str, Any], name: str, where: str, classes: tuple[type, ...], required: bool = True) -> Any:
    if name not in row:
        if required:
            raise TokenzipError(f"{where}: missing field {name!r} (each line needs context, question, answer)")
        return None
    value = row[name]
    if not isinstance(value, classes) or (isinstance(value, bool) and bool not in classes):
        expected = " or ".join(_TYPE_NAMES[k] for k in classes)
        raise TokenzipError(f"{where}: field {name!r} must be {expected}, got {_short(value)} "
                            f"({type(value).__name__})")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _count(row: dict[str, Any], name: str, where: str, minimum: int) -> int | None:
    """An optional integer field (``length``, ``index``, ``max_new_tokens``) of at least ``minimum``."""
    value = _field(row, name, where, (int,), required=False)
    if value is not None and value < minimum:
        raise TokenzipError(f"{where}: field {name!r} must be an integer >= {minimum}, got {value}")
    return value


def _parse_line(line: str, where: str) -> dict[str, Any]:
    """One line's fields, each checked for type and range; optional ones absent are None."""
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise TokenzipError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(row, dict):
        raise TokenzipError(f"{where}: expected a JSON object with context, question and answer")
    check_text(row, where)
    context = _field(row, "context", where, (str,))
    question = _field(row, "question", where, (str,))
    answer = _field(row, "answer", where, (str, list))
    answers = [answer] if isinstance(answer, str) else answer
    if not answers or not all(isinstance(a, str) and a for a in answers):
        raise TokenzipError(f"{where}: 'answer' must be a non-empty string or a list of non-empty strings")
    if not context.strip():
        raise TokenzipError(f"{where}: the context is empty")
    metric = _field(row, "metric", where, (str,), required=False) or "part"
    metrics = answer_metrics()
    if metric not in metrics:
        raise TokenzipError(f"{where}: metric must be one of {', '.join(metrics)}, got {metric!r}")
    task = _field(row, "task", where, (str,), required=False)
    if task is not None and not task.strip():
        raise TokenzipError(f"{where}: field 'task' must be a non-empty name (or be left out: the file's name)")
    return {"context": context, "question": question, "answers": answers, "metric": metric,
            "kind": metrics[metric].name, "task": task,
            "prefix": _field(row, "answer_prefix", where, (str,), required=False) or "",
            "max_new": _count(row, "max_new_tokens", where, 1) or 32,
            "length": _count(row, "length", where, 0), "index": _count(row, "index", where, 0),
            "formatted": _field(row, "formatted", where, (bool,), required=False)}


class _Samples:
    """Samples by (task, context); each has a distinct id (task, length, index), which keys its bench rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_context: dict[tuple[str, str], Sample] = {}
        self.by_id: dict[str, Sample] = {}

    def add(self, fields: dict[str, Any], number: int) -> None:
        task = fields["task"] or self.path.stem
        sample = self.by_context.get((task, fields["context"]))
        if sample is None:
            sample = self._new(task, fields, number)
        elif fields["index"] not in (None, sample.index) or fields["length"] not in (None, sample.length):
            raise TokenzipError(
                f"{self.path}, line {number}: the same task and context as line {sample.metadata['line']}, but "
                f"another length/index ({fields['length']}/{fields['index']} vs {sample.length}/{sample.index}); "
                "lines with one context are questions about one sample: give them the same length and index")
        sample.max_new_tokens = max(sample.max_new_tokens, fields["max_new"])
        sample.questions.append(Question(fields["question"], fields["answers"], fields["prefix"]))

    def _new(self, task: str, fields: dict[str, Any], number: int) -> Sample:
        length = fields["length"] or 0
        index = fields["index"]
        if index is None:  # the next index this task and length do not use yet
            index = sum(1 for s in self.by_id.values() if s.task == task)
            while f"{task}|{length}|{index}" in self.by_id:
                index += 1
        metadata: dict[str, Any] = {"source": str(self.path), "line": number}
        if fields["formatted"]:
            metadata["formatted"] = True
        sample = Sample(task=task, length=length, index=index, context=fields["context"],
                        max_new_tokens=fields["max_new"], metric=fields["metric"], kind=fields["kind"],
                        metadata=metadata)
        other = self.by_id.get(sample.id)
        if other is not None:
            raise TokenzipError(
                f"{self.path}, lines {other.metadata['line']} and {number}: two different contexts with the same "
                f"task {task!r}, length {length} and index {index}; their bench rows would share one key, and a "
                "resumed run would skip the second. Give each context its own 'index' (or 'task')")
        self.by_context[(task, fields["context"])] = self.by_id[sample.id] = sample
        return sample


def read_tasks_file(path: str | Path) -> list[Sample]:
    """Samples from a JSONL file; a malformed line is an error naming the file and line number."""
    path = Path(path)
    lines = read_text(path, "tasks file", stdin=False).splitlines()
    samples = _Samples(path)
    for number, line in enumerate(lines, start=1):
        if line.strip():
            samples.add(_parse_line(line, f"{path}, line {number}"), number)
    if not samples.by_id:
        raise TokenzipError(f"the tasks file {path} holds no rows")
    return list(samples.by_id.values())
