"""A worker holds one loaded model and turns jobs (a sample and the method/ratio pairs it still needs) into rows.

The same class runs in the main process, in each process of the local pool and inside each Ray
actor, so every backend writes identical rows (timings aside).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenzip.bench.kinds.base import get_kind
from tokenzip.bench.measure import bring_back_long_lived, environment, set_apart_long_lived
from tokenzip.bench.models import load, load_tokenizer, max_positions
from tokenzip.bench.prompting import Prompt, format_sample
from tokenzip.bench.stages import adapter
from tokenzip.bench.tasks.base import Sample, build_sample
from tokenzip.bench.tasks.registry import get_task
from tokenzip.engines import load_engine
from tokenzip.models.encoders import encoder_stack
from tokenzip.prompt.scorer import CausalScorer


@dataclass
class Job:
    """One sample and the ``(method spec, ratio)`` pairs still to measure on it."""

    sample: Sample
    prompt: Prompt
    pairs: list[tuple[str, float]] = field(default_factory=list)


class Worker:
    """Loads the model once (and warms it up), then runs jobs."""

    def __init__(self, config: Any, loaded: tuple[Any, Any] | None = None) -> None:
        from tokenzip.engines.torch import TorchEngine  # lazy: keeps bench.worker's own imports free of transformers

        self.config = config
        if config.threads is None:
            config.threads = default_threads(config.workers)
        torch.set_num_threads(config.threads)
        self.device = config.device
        if config.engine == "torch":
            self.model, self.tokenizer = loaded if loaded is not None else load(config.model, config.dtype,
                                                                                  config.device)
            self.engine = TorchEngine(self.model, self.tokenizer)
        else:  # the prompts are formatted and counted with the model's own tokenizer; the engine reads them
            self.model, self.tokenizer = None, load_tokenizer(config.model)
            self.engine = load_engine(config.engine, config.model, n_ctx=config.n_ctx, threads=config.threads)
        self.stage = adapter(config.stage)
        self.max_length = min(512, (max_positions(self.model) if self.model is not None else 0) or 512)
        self._scorer = None
        self.environment = environment(self.device)
        if config.warmup:
            self.warm_up()
        set_apart_long_lived()  # the model, tokenizer and imports: not rescanned before every measured step

    def close(self) -> None:
        """Give the objects set apart at start back to the collector (for a worker that ran in the caller's process)."""
        bring_back_long_lived()

    def max_new_tokens(self, sample: Sample) -> int:
        return self.config.max_new_tokens or sample.max_new_tokens

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def scorer(self) -> Any:
        """The prompt stage's token scorer: the model under test."""
        if self._scorer is None:
            self._scorer = CausalScorer(self.model, self.tokenizer)
        return self._scorer

    @torch.no_grad()
    def warm_up(self) -> None:
        """One untimed uncompressed run on a short input, so no row pays for first-call overheads."""
        task = "embedding:corpus=11" if self.config.stage == "layers" and _is_encoder(self.model) else "niah_single"
        sample = build_sample(get_task(task), self.count, 48 if task.startswith("embedding") else 256, 0, seed=-1)
        sample.max_new_tokens = 2
        list(self.stage.run(self, sample, format_sample(sample, self.tokenizer, self.config.prompt_style),
                            [("none", 0.0)]))

    def rows(self, job: Job) -> Iterator[dict[str, Any]]:
        """Rows for every pair of ``job``, each as soon as it is measured (by the stage adapter; scored here, as
        the sample's task kind declares)."""
        for measured in self.stage.run(self, job.sample, job.prompt, job.pairs):
            yield self.complete(job.sample, measured)

    def run(self, job: Job) -> list[dict[str, Any]]:
        """All rows of ``job`` (for process pools and Ray actors, which return a job's rows at once)."""
        return list(self.rows(job))

    def complete(self, sample: Sample, m: dict[str, Any]) -> dict[str, Any]:
        identity = self.config.identity()
        # rows of another engine (llamacpp) are labelled by it and read against their own uncompressed row
        engine = "tokenzip" if self.config.engine == "torch" else self.config.engine
        row: dict[str, Any] = {"key": row_key(sample, m["method"], m["ratio"]), "engine": engine, **identity,
                               "task": sample.task, "task_kind": sample.kind, "length": sample.length,
                               "sample": sample.index, "metric": sample.metric, "metadata": sample.metadata}
        row.update(get_kind(sample.kind).score(sample, m))
        row.update(m)
        row.update(self.environment, warmed_up=self.config.warmup,
                   time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        return row


def row_key(sample: Sample, method: str, ratio: float) -> str:
    """The identity of a row inside a run directory."""
    return f"{sample.id}|{method}|{float(ratio):g}"


def _is_encoder(model: Any) -> bool:
    return encoder_stack(model) is not None


def default_threads(workers: int) -> int:
    """Torch threads per worker: the CPUs divided among the workers, or 1 on a machine already busier than its
    CPU count (intra-op threads that must share cores spin and run several times slower than one thread)."""
    cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cpus
    except OSError:
        busy = False
    return 1 if busy else max(1, cpus // max(1, workers))
