"""Task kinds: what a task's samples measure, how a prediction is scored and how the report reads the scores.

A kind is data (after lm-evaluation-harness's metric specs: a task names its metric, and the metric declares
its aggregation and direction): one frozen :class:`~tokenzip.bench.kinds.base.TaskKind` registered with
:func:`~tokenzip.bench.kinds.base.register_kind`. The worker scores rows with it, the runner and the stage
adapters ask it what to measure, and the report takes its scale, direction, comparison and heading from it;
none of them compare kind names.

A new kind is one file in this package (it registers itself on import; see ``qa_f1.py``) and its test; a task
uses it by setting ``kind = "<name>"`` (see ``tokenzip.bench.tasks.qa_f1``).
"""

from tokenzip.bench.kinds.base import TaskKind, get_kind, register_kind

__all__ = ["TaskKind", "get_kind", "register_kind"]
