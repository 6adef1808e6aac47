"""What a benchmark task is: samples of (context, questions, answers), sized in the model's own tokens.

A task is a small dataclass registered with :func:`register_task`. Its parameters are dataclass
fields (``niah_single:haystack=prose,value=uuid`` sets them from the command line). For each sample
it writes a :class:`Draft`: the questions and answers, and a ``render(units, pieces)`` function
that builds the context from a number of whole filler units plus the first pieces (words, UUID
groups, digits) of the next one.
:func:`build_sample` then searches for the amount of filler that gives the requested number of
tokens (within 2%), measured with the tokenizer of the model under test, and checks that every
answer is placed as the task promises (:meth:`Task.check`). Everything is drawn from a
``random.Random`` seeded with ``(seed, task, length, index)``, so a sample is the same in every
process and on every machine.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokenzip.bench.kinds.base import EMBEDDINGS, get_kind
from tokenzip.errors import TokenzipError

TOLERANCE = 0.02  # generated contexts are within 2% of the requested number of tokens


@dataclass
class Question:
    """One question about a context and the strings a right answer contains."""

    text: str
    answers: list[str]
    answer_prefix: str = ""


@dataclass
class Sample:
    """One benchmark input. ``context`` is what gets compressed; questions come after it.

    ``metric``: ``all`` (RULER's string_match_all: the fraction of answers found in the prediction)
    or ``part`` (string_match_part: 1 when any answer is found); ``f1`` with the ``qa_f1`` kind.
    Perplexity samples carry the text to score in ``continuation``; embedding samples carry a corpus in
    ``texts``. ``kind`` names a registered :class:`~tokenzip.bench.kinds.base.TaskKind`: what is measured
    and how it is scored.
    """

    task: str
    length: int  # requested context length in tokens (0 for user data)
    index: int
    context: str
    questions: list[Question] = field(default_factory=list)
    max_new_tokens: int = 32
    metric: str = "all"
    kind: str = "qa"
    continuation: str = ""
    texts: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.task}|{self.length}|{self.index}"


@dataclass
class Draft:
    """A sample before sizing: its questions, and how to render a context of a given size."""

    questions: list[Question]
    render: Callable[[int, int], str]  # (whole filler units, pieces of the next unit) -> context
    unit_parts: Callable[[int], int]  # pieces filler unit i can be cut into (0: units stay whole)
    metadata: dict[str, Any] = field(default_factory=dict)
    continuation: str = ""
    texts: list[str] = field(default_factory=list)


@dataclass
class Task:
    """Base of every task. Subclasses set ``name``, ``description`` and define :meth:`draft`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "qa"
    metric: ClassVar[str] = "all"
    max_new_tokens: ClassVar[int] = 32

    def draft(self, rng: random.Random, index: int, length: int, count: Callable[[str], int]) -> Draft:
        """Decide one sample's content; ``count`` measures tokens, ``length`` is the target."""
        raise NotImplementedError

    def check(self, sample: Sample) -> bool:
        """Whether the answers are placed as promised; by default each answer occurs exactly once."""
        return all(sample.context.count(a) == 1 for q in sample.questions for a in q.answers)

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def spec(self) -> str:
        """Canonical name with the parameters that differ from the defaults, e.g. ``niah_single:haystack=prose``."""
        defaults = type(self)()
        changed = {k: v for k, v in self.params().items() if getattr(defaults, k) != v}
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in sorted(changed.items())) if changed else "")


def rng_for(seed: int, spec: str, length: int, index: int) -> random.Random:
    """The random source of one sample (string seeds are hashed with SHA-512: stable across processes)."""
    return random.Random(f"tokenzip-bench|{seed}|{spec}|{length}|{index}")


def fit(count: Callable[[str], int], target: int, render: Callable[[int, int], str],
        unit_parts: Callable[[int], int], what: str, tolerance: float | None = TOLERANCE) -> str:
    """The text with the most filler whose length is at most ``target`` tokens, checked to be within
    ``tolerance`` (a fraction of ``target``; None: no check)."""
    if count(render(0, 0)) > target:
        raise TokenzipError(f"{what}: {target} tokens is too short for this task even with no filler "
                            f"({count(render(0, 0))} tokens); ask for a longer context")
    hi = 16
    while count(render(hi, 0)) <= target:
        hi *= 2
        if hi > 1 << 22:
            raise RuntimeError(f"{what}: the filler does not grow the context")
    lo = hi // 2 if hi > 16 else 0  # count(render(lo)) <= target < count(render(hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(render(mid, 0)) <= target else (lo, mid)
    parts_lo, parts_hi = 0, unit_parts(lo)
    while parts_hi - parts_lo > 1:
        mid = (parts_lo + parts_hi) // 2
        parts_lo, parts_hi = (mid, parts_hi) if count(render(lo, mid)) <= target else (parts_lo, mid)
    text = render(lo, parts_lo)
    n = count(text)
    if tolerance is not None and abs(n - target) > tolerance * target:
        raise TokenzipError(f"{what}: could only reach {n} tokens for a target of {target} "
                            f"(more than {tolerance:.0%} off); "
                            "ask for a longer context")
    return text


def build_sample(task: Task, count: Callable[[str], int], length: int, index: int, seed: int) -> Sample:
    """Generate sample ``index`` of ``task`` with a context of ``length`` tokens (as counted by ``count``)."""
    spec = task.spec()
    rng = rng_for(seed, spec, length, index)
    for _attempt in range(20):  # a random filler may contain an answer by chance: draw again
        draft = task.draft(rng, index, length, count)
        if get_kind(task.kind).measures == EMBEDDINGS:
            context = ""
        else:
            context = fit(count, length, draft.render, draft.unit_parts, f"task {spec}")
        sample = Sample(task=spec, length=length, index=index, context=context, questions=draft.questions,
                        max_new_tokens=task.max_new_tokens, metric=task.metric, kind=task.kind,
                        continuation=draft.continuation, texts=draft.texts, metadata=draft.metadata)
        if task.check(sample):
            return sample
    raise RuntimeError(f"task {spec}: could not place the answers as required in 20 attempts (a generator bug)")


def with_inserts(units: list[str], inserts: list[tuple[float, str]]) -> list[str]:
    """``units`` with each insert placed at its relative depth (0 = start, 1 = end), in depth order."""
    out = list(units)
    for depth, text in sorted(inserts, key=lambda item: item[0], reverse=True):
        out.insert(round(depth * len(units)), text)
    return out


def filler_render(instruction: str, filler: Any, inserts: list[tuple[float, str]], sep: str = " ",
                  footer: str = "") -> tuple[Callable[[int, int], str], Callable[[int], int]]:
    """The usual layout: instruction, then units of ``filler`` (a :class:`~.haystack.Filler`) with the
    inserts at their depths. ``render(n, k)`` uses n whole units and the first k pieces of the next."""

    def render(n: int, k: int) -> str:
        body = [filler(i) for i in range(n)]
        if k:
            body.append(filler.prefix(n, k))
        return instruction + sep.join(with_inserts(body, inserts)) + footer

    return render, filler.parts
