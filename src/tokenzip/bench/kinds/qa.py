"""``qa``: generated answers scored by RULER's string match (the sample's metric: ``all`` or ``part``)."""

from tokenzip.bench.kinds.base import TaskKind, per_question, register_kind
from tokenzip.bench.scoring import string_score

QA = register_kind(TaskKind(
    name="qa", header="score (%, string match)",
    score=per_question(lambda sample, prediction, answers: string_score(sample.metric, prediction, answers)),
    scale=100.0, retention=True, order=0, metrics=("all", "part")))
