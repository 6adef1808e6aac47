"""Benchmark tasks, generated locally and sized in the tokens of the model under test.

Every module in this package registers its task(s) on import: a new task is one small file with a
``@register_task`` dataclass (see ``niah_single.py``). User data comes as JSONL (:mod:`.jsonl`).
"""

from tokenzip.bench.tasks.base import Draft, Question, Sample, Task, build_sample
from tokenzip.bench.tasks.registry import TASKS, get_task, list_tasks, parse_spec, register_task

__all__ = ["TASKS", "Draft", "Question", "Sample", "Task", "build_sample", "get_task", "list_tasks", "parse_spec",
           "register_task"]
