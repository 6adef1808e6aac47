"""Benchmark harness: locally generated tasks, metrics, the runner, backends and reports.

    import tokenzip as tz
    rows = tz.bench.run(tz.bench.BenchConfig(model="gemma-3-270m", stage="kv", methods=["snapkv", "kvzip"],
                                             ratios=[0.5, 0.75], tasks=["niah_multikey", "vt"], contexts=[2048],
                                             samples=20, out="results/run1"))
    # or the same fields as keywords: tz.bench.run(model="gemma-3-270m", ..., context=2048, ...)
    tz.bench.write_report("results/run1")      # report.md, report.html, plots/*.png
"""

from tokenzip.bench.report import summary_table, write_report
from tokenzip.bench.rows import load_rows
from tokenzip.bench.runner import BenchConfig, export_tasks, run
from tokenzip.bench.scoring import embedding_fidelity, string_match_all, string_match_part
from tokenzip.bench.tasks import TASKS, Question, Sample, Task, get_task, list_tasks, register_task

__all__ = ["TASKS", "BenchConfig", "Question", "Sample", "Task", "embedding_fidelity", "export_tasks", "get_task",
           "list_tasks", "load_rows", "register_task", "run", "string_match_all", "string_match_part",
           "summary_table", "write_report"]
