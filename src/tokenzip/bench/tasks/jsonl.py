"""User data as JSONL: one question per line, ``context``, ``question``, ``answer`` (+ ``answer_prefix``).

Optional fields: ``answer_prefix`` (text the answer starts with), ``task`` (a label; default: the
file's name), ``max_new_tokens`` (default 32), ``metric`` (``part``, the default: right when any
answer string is in the prediction; ``all``: the fraction of answer strings found). ``answer`` is a
string or a list of strings. Lines with the same task and context become one sample whose questions
are all answered from one prefill, like kvpress's grouping. Files written by ``tokenzip bench
--export-tasks`` carry ``"formatted": true``: their context and question are already the exact
text given to the model and are used as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenzip.bench.tasks.base import METRICS, Question, Sample
from tokenzip.errors import TokenzipError


def _field(row: dict[str, Any], name: str, where: str, kinds: tuple[type, ...], required: bool = True) -> Any:
    if name not in row:
        if required:
            raise TokenzipError(f"{where}: missing field {name!r} (each line needs context, question, answer)")
        return None
    value = row[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in kinds)
        raise TokenzipError(f"{where}: field {name!r} must be a {names}, got {type(value).__name__}")
    return value


def read_tasks_file(path: str | Path) -> list[Sample]:
    """Samples from a JSONL file; a malformed line is an error naming the file and line number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenzipError(f"cannot read the tasks file {path}: {exc}") from exc
    samples: dict[tuple[str, str], Sample] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TokenzipError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(row, dict):
            raise TokenzipError(f"{where}: expected a JSON object with context, question and answer")
        context = _field(row, "context", where, (str,))
        question = _field(row, "question", where, (str,))
        answer = _field(row, "answer", where, (str, list))
        answers = [answer] if isinstance(answer, str) else answer
        if not answers or not all(isinstance(a, str) and a for a in answers):
            raise TokenzipError(f"{where}: 'answer' must be a non-empty string or a list of non-empty strings")
        if not context.strip():
            raise TokenzipError(f"{where}: the context is empty")
        prefix = _field(row, "answer_prefix", where, (str,), required=False) or ""
        task = _field(row, "task", where, (str,), required=False) or path.stem
        max_new = _field(row, "max_new_tokens", where, (int,), required=False) or 32
        metric = _field(row, "metric", where, (str,), required=False) or "part"
        if metric not in METRICS:
            raise TokenzipError(f"{where}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if max_new < 1:
            raise TokenzipError(f"{where}: max_new_tokens must be >= 1")
        key = (task, context)
        if key not in samples:
            index = sum(1 for t, _ in samples if t == task)
            metadata = {"source": str(path), "line": number}
            if row.get("formatted"):
                metadata["formatted"] = True
            samples[key] = Sample(task=task, length=int(row.get("length", 0) or 0), index=int(row.get("index", index)),
                                  context=context, max_new_tokens=max_new, metric=metric, metadata=metadata)
        sample = samples[key]
        sample.max_new_tokens = max(sample.max_new_tokens, max_new)
        sample.questions.append(Question(question, answers, prefix))
    if not samples:
        raise TokenzipError(f"the tasks file {path} holds no rows")
    return list(samples.values())
