"""``tz.bench.run``: model x stage x methods x ratios x tasks x context lengths x samples -> JSONL rows.

One row per (sample, method, ratio), appended to ``OUT/rows.jsonl`` and flushed to disk as soon as
it is measured. A run directory belongs to one configuration (model, stage, seed, prompt style,
dtype, device, ...: :meth:`BenchConfig.identity`), recorded in ``OUT/config.json``; running again
with the same configuration skips the rows already there (the grid may grow: more methods, ratios,
tasks or samples), and a different configuration is refused rather than mixed in. The uncompressed
model (``none``, ratio 0) is always measured: every score is read against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenzip.bench import backends
from tokenzip.bench.kinds.base import ANSWERS, NLL, get_kind
from tokenzip.bench.measure import git_commit
from tokenzip.bench.models import TINY, config_positions, load, load_tokenizer, max_positions
from tokenzip.bench.prompting import STYLES, format_sample
from tokenzip.bench.report import summary_table
from tokenzip.bench.rows import RowWriter, bench_rows, read_rows, write_rows
from tokenzip.bench.stages import NONE, PIPELINE, STAGES, build_method, is_noop
from tokenzip.bench.tasks.base import Sample, build_sample
from tokenzip.bench.tasks.jsonl import read_tasks_file
from tokenzip.bench.tasks.registry import get_task
from tokenzip.bench.worker import Job, row_key
from tokenzip.engines import check_engine
from tokenzip.errors import TokenzipError
from tokenzip.method import check_ratio
from tokenzip.models.loading import check_model_name
from tokenzip.spec import parse
from tokenzip.textio import STDOUT, check_file, out_dir, out_file, write_atomic

ROWS = "rows.jsonl"
CONFIG = "config.json"
BACKENDS = ("local", "ray")


@dataclass
class BenchConfig:
    """Everything a sweep is defined by. Fields in :meth:`identity` must match to resume a directory.

    ``methods`` are names of ``stage`` methods, optionally with parameters (``"kivi:bits=2"``);
    ``"none"`` is the uncompressed model, always included. ``ratios`` are fractions of tokens removed.
    ``stage="pipeline"``: ``methods`` are pipeline specs (``"prompt:extractive@0.5 | kv:kvzip@0.5"``, each
    stage's ratio inside; ``ratios`` is ignored), single-stage and composed alike.
    ``tasks`` are task names with optional parameters (``"niah_single:haystack=prose"``), generated at
    each of the ``contexts`` lengths (tokens of the model's tokenizer), ``samples`` each; ``tasks_file``
    (JSONL) replaces them with user data. ``workers`` processes (``backend="local"``) or Ray actors
    (``backend="ray"``) share the samples. ``device`` None: cuda when available (settled by :meth:`validate`).
    ``engine`` picks the runtime of the kv stage (``torch`` or ``llamacpp``, :mod:`tokenzip.engines`; ``n_ctx``
    sizes llama.cpp's context).
    Sequences may be given as tuples and ``contexts`` as one length; they are kept as lists.
    """

    model: str = "gemma-3-270m"
    stage: str = "kv"
    methods: list[str] = field(default_factory=lambda: ["snapkv"])
    ratios: list[float] = field(default_factory=lambda: [0.5])
    tasks: list[str] = field(default_factory=lambda: ["niah_single"])
    contexts: list[int] = field(default_factory=lambda: [2048])
    samples: int = 20
    out: str = "results/run1"
    seed: int = 0
    tasks_file: str | None = None
    max_new_tokens: int | None = None
    prompt_style: str = "auto"
    query_aware: bool = False
    shared_prefill: bool = True
    dtype: str = "float32"
    device: str | None = None
    workers: int = 1
    backend: str = "local"
    ray_address: str | None = None
    threads: int | None = None
    warmup: bool = True
    engine: str = "torch"  # "llamacpp": the kv stage in llama.cpp (tokenzip.engines); rows labelled llamacpp:METHOD
    n_ctx: int | None = None  # llama.cpp's context cells (None: sized to each context)
    command: str | None = None  # the command line that started the run, recorded in config.json

    def __post_init__(self) -> None:
        for name in ("methods", "ratios", "tasks"):  # a string is refused by validate(), not split into letters
            if not isinstance(getattr(self, name), str):
                setattr(self, name, list(getattr(self, name)))
        self.contexts = [self.contexts] if isinstance(self.contexts, int) else list(self.contexts)
        self.out = str(self.out)

    def identity(self) -> dict[str, Any]:
        """What makes two runs' rows comparable; stored in every row and in ``config.json``."""
        return {"model": self.model, "stage": self.stage, "seed": self.seed, "prompt_style": self.prompt_style,
                "query_aware": self.query_aware, "shared_prefill": self.shared_prefill, "dtype": self.dtype,
                "device_kind": self.device.split(":")[0], "max_new_tokens": self.max_new_tokens,
                "tasks_file_sha256": _sha256(self.tasks_file) if self.tasks_file else None,
                **({"engine": self.engine} if self.engine != "torch" else {})}  # torch runs: identities as before

    def validate(self) -> None:
        if isinstance(self.methods, str) or isinstance(self.tasks, str):
            raise TokenzipError("methods and tasks are lists of names, e.g. methods=['snapkv'], tasks=['vt']")
        if self.device is None:
            import torch

            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = check_device(self.device)
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise TokenzipError(f"--threads: torch threads per worker, an integer >= 1 (leave it out for the "
                                f"default); got {self.threads!r}")
        if not self.model.startswith(TINY):  # an unknown model is refused before the run directory is read
            check_model_name(self.model)
        if self.stage not in STAGES:
            raise TokenzipError(f"unknown stage {self.stage!r}; the bench runs: {', '.join(STAGES)}")
        check_engine(self.engine)
        if self.engine != "torch" and self.stage != "kv":
            raise TokenzipError(f"--engine {self.engine} runs the kv stage; the {self.stage} stage runs in torch")
        if not self.methods:
            raise TokenzipError("give at least one method (or 'none' for the uncompressed model only)")
        if not self.ratios:
            raise TokenzipError("give at least one ratio (the fraction of tokens removed, 0 <= r < 1)")
        self.ratios = list(dict.fromkeys(check_ratio(r) for r in self.ratios))  # each once: a row per key
        self.methods = list(dict.fromkeys(m.strip() if isinstance(m, str) else m for m in self.methods))
        if self.stage == PIPELINE:  # bad specs: the spec parser's message, before any work
            self.methods, self.ratios = pipeline_specs(self.methods), [0.0]
        for spec in self.methods if self.stage != PIPELINE else ():
            for ratio in self.ratios:  # unknown methods, bad parameters: errors before any work
                method = build_method(self.stage, spec, ratio)
                if self.engine == "llamacpp":
                    # lazy: keeps bench.runner's own imports free of transformers
                    from tokenzip.engines.llamacpp.engine import check_method

                    check_method(method)
        if not self.tasks_file:
            if not self.tasks:
                raise TokenzipError("give at least one task (`tokenzip bench --list-tasks`) or --tasks-file")
            for spec in self.tasks:
                get_task(spec)
            if not self.contexts or any(isinstance(c, bool) or not isinstance(c, int) or c < 16 for c in self.contexts):
                raise TokenzipError(f"context lengths are integers >= 16 tokens, got {self.contexts!r}")
        else:
            check_file(self.tasks_file, "tasks file")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise TokenzipError(f"samples must be an integer >= 1, got {self.samples!r}")
        if self.workers < 1:
            raise TokenzipError(f"workers must be >= 1, got {self.workers}")
        if self.backend not in BACKENDS:
            raise TokenzipError(f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.prompt_style not in STYLES:
            raise TokenzipError(f"unknown prompt style {self.prompt_style!r}; choose one of: {', '.join(STYLES)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise TokenzipError("max_new_tokens must be >= 1")

    def pairs(self) -> list[tuple[str, float]]:
        """The (method, ratio) grid, uncompressed first; ratio 0 of a method that does nothing at 0 is skipped."""
        grid = [(NONE, 0.0)]
        if self.stage == PIPELINE:
            return grid + [(spec, 0.0) for spec in self.methods if spec != NONE]
        for spec in self.methods:
            for ratio in self.ratios:
                if (spec.split(":")[0] == NONE or is_noop(self.stage, build_method(self.stage, spec, ratio))):
                    continue
                grid.append((spec, ratio))
        return grid


def check_device(device: Any) -> str:
    """``device`` as text if this machine has it (cpu, cuda, cuda:N, mps); else an error saying what it has."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TokenzipError(f"--device {device!r} is not a device: cpu, cuda, cuda:1, mps") from None
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev.type == "cuda" and (not cuda or (dev.index or 0) >= cuda):
        raise TokenzipError(f"--device {device}: this torch sees {cuda or 'no'} CUDA device{'s' if cuda != 1 else ''}"
                            f"{'' if cuda else ' (a CPU-only build, or no GPU)'}; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise TokenzipError(f"--device {device}: MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise TokenzipError(f"--device {device}: the bench runs on cpu, cuda or mps")
    return str(device)


def pipeline_specs(specs: Sequence[str]) -> list[str]:
    """Canonical pipeline spec texts (``tokenzip.spec``), each once; a bad spec raises the parser's message."""
    out = []
    for spec in specs:
        try:
            text = str(parse(spec))
        except TokenzipError as exc:
            raise TokenzipError(f"bad pipeline spec {spec!r}: {exc}") from None
        if text not in out:
            out.append(text)
    return out


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- samples -----------------------------------------------------------------------------------
def make_samples(config: BenchConfig, tokenizer: Any) -> list[Sample]:
    """Every sample of the sweep, generated with the model's tokenizer (or read from the tasks file)."""
    if config.tasks_file:
        return read_tasks_file(config.tasks_file)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    return [build_sample(get_task(spec), count, length, index, config.seed)
            for length in config.contexts for spec in config.tasks for index in range(config.samples)]


def shorten_hint(sample: Sample) -> str:
    """What to do about a sample too long for the model: a generated one takes --context, a tasks file's is cut."""
    source = sample.metadata.get("source")
    if source:
        return f"shorten the context on line {sample.metadata.get('line')} of the tasks file {source}"
    return "ask for a shorter --context"


def check_sizes(samples: Iterable[Sample], tokenizer: Any, limit: int, config: BenchConfig,
                chars_per_token: int = 16) -> None:
    """Refuse contexts far too long for the model before tokenizing them whole: only the first
    ``(limit + 1) * chars_per_token`` characters of a longer context are tokenized to find out."""
    if not limit:
        return
    head_chars = (limit + 1) * chars_per_token
    for sample in samples:
        if len(sample.context) <= head_chars:
            continue  # check_lengths measures it exactly
        n = len(tokenizer(sample.context[:head_chars], add_special_tokens=False).input_ids)
        if n > limit:
            raise TokenzipError(
                f"sample {sample.id} has a context of {len(sample.context):,} characters; its first {head_chars:,} "
                f"alone are {n:,} tokens, more than the {limit:,} positions {config.model} allows: "
                f"{shorten_hint(sample)}")


def check_lengths(samples: Iterable[Sample], prompts: Sequence[Any], tokenizer: Any, limit: int,
                  config: BenchConfig) -> None:
    """Refuse samples that do not fit in the model's positions (context + question + answer)."""
    if not limit:
        return
    for sample, prompt in zip(samples, prompts):
        n = len(tokenizer(prompt.context).input_ids)
        measures = get_kind(sample.kind).measures
        if measures == NLL:
            n += len(tokenizer(sample.continuation, add_special_tokens=False).input_ids)
        elif measures == ANSWERS:
            longest = max(len(tokenizer(q + p, add_special_tokens=False).input_ids) for q, p in prompt.questions)
            n += longest + (config.max_new_tokens or sample.max_new_tokens)
        if n > limit:
            raise TokenzipError(
                f"sample {sample.id} needs {n} positions (context, question and answer) but {config.model} allows "
                f"{limit}; {shorten_hint(sample)}")


# --- the run directory ------------------------------------------------------------------------------
def prepare_out(config: BenchConfig) -> set[str]:
    """Create or check the run directory; return the keys of the rows already finished there."""
    out = out_dir(config.out, "--out")
    identity = config.identity()
    config_path = out / CONFIG
    rows = [r for r in read_rows(out / ROWS) if isinstance(r, dict)]
    stored = None
    if config_path.exists() and rows:  # a configuration with no finished rows protects nothing
        try:
            stored = json.loads(config_path.read_text())["identity"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenzipError(f"{config_path} is unreadable ({exc}); move it away or use another --out") from exc
    elif rows:
        stored = {k: rows[0].get(k) for k in identity}
    if stored is not None and stored != identity:
        diff = ", ".join(f"{k}: {stored.get(k)!r} there vs {identity[k]!r} now" for k in identity
                         if stored.get(k) != identity[k])
        raise TokenzipError(f"{out} holds results of a different configuration ({diff}). Its rows are kept as "
                            "they are: use another --out directory, or the same settings to resume it.")
    grid = {k: getattr(config, k) for k in ("methods", "ratios", "tasks", "contexts", "samples", "tasks_file")}
    record = {"identity": identity, "last_grid": grid, "command": config.command}
    write_atomic(config_path, json.dumps(record, indent=2) + "\n")
    return {r["key"] for r in rows if isinstance(r, dict) and isinstance(r.get("key"), str)}


# --- the run -----------------------------------------------------------------------------------------
def run(config: BenchConfig | None = None, /, *, loaded: tuple[Any, Any] | None = None, progress: bool = True,
        summary: bool = True, **fields: Any) -> list[dict[str, Any]]:
    """Run the sweep ``config`` and return every row of ``config.out`` (finished earlier or now).

    Instead of a :class:`BenchConfig`, its fields may be given as keywords (``context``, one length or
    several, stands for ``contexts``): ``run(model="gemma-3-270m", tasks=["vt"], context=2048, out="r1")``.
    ``loaded`` passes an already loaded ``(model, tokenizer)`` for a single in-process worker; ``progress``
    shows a progress bar and ``summary`` prints the summary table at the end.
    """
    if config is None:
        if "context" in fields:
            fields["contexts"] = fields.pop("context")
        config = BenchConfig(**fields)
    elif fields:
        raise TypeError(f"run() takes a BenchConfig or its fields, not both (got {', '.join(sorted(fields))})")
    config.validate()
    done = prepare_out(config)
    in_process = config.backend == "local" and config.workers == 1 and config.engine == "torch"
    if in_process and loaded is None:
        loaded = load(config.model, config.dtype, config.device)
    if loaded is not None:
        tokenizer, limit = loaded[1], max_positions(loaded[0])
    else:
        tokenizer, limit = load_tokenizer(config.model), config_positions(config.model)
    sample_list = make_samples(config, tokenizer)
    check_sizes(sample_list, tokenizer, limit, config)
    prompts = [format_sample(s, tokenizer, config.prompt_style) for s in sample_list]
    check_lengths(sample_list, prompts, tokenizer, limit, config)
    grid = config.pairs()
    jobs = []
    for sample, prompt in zip(sample_list, prompts):
        pending = [(m, r) for m, r in grid if row_key(sample, m, r) not in done]
        if pending:
            jobs.append(Job(sample, prompt, pending))
    total = sum(len(j.pairs) for j in jobs)
    skipped = len(sample_list) * len(grid) - total
    if skipped:
        print(f"tokenzip bench: {skipped} rows already in {config.out}, skipped; {total} to run", file=sys.stderr)
    if total:
        _execute(config, jobs, total, loaded if in_process else None, progress, git_commit(), backends)
    rows = bench_rows(Path(config.out) / ROWS)
    if summary and rows:
        print(summary_table(rows))
    return rows


def _execute(config: BenchConfig, jobs: list[Job], total: int, loaded: Any, progress: bool, commit: str | None,
             backends: Any) -> None:
    from tqdm.auto import tqdm

    writer = RowWriter(Path(config.out) / ROWS)
    bar = tqdm(total=total, unit="row", desc=f"bench {config.stage}", disable=not progress, dynamic_ncols=True)
    try:
        for rows in backends.execute(config, jobs, loaded):
            for row in rows:
                row["git_commit"] = commit
                writer.write(row)
            bar.update(len(rows))
    finally:
        bar.close()
        writer.close()


def export_tasks(path: str | os.PathLike, model: str = "gemma-3-270m", tasks: Sequence[str] = ("niah_single",),
                 context: int | Sequence[int] = 2048, samples: int = 20, seed: int = 0, prompt_style: str = "auto",
                 tasks_file: str | None = None, tokenizer: Any = None) -> int:
    """Write the exact prompts and answers of a sweep as JSONL (one line per question); returns the line count.

    Each line: ``context`` (tokenized with the tokenizer's special tokens, e.g. BOS), ``question`` and
    ``answer_prefix`` (appended right after it, without special tokens), ``answer`` (list),
    ``max_new_tokens``, ``metric``, ``task``, ``length``, ``index``, ``id``, ``context_tokens`` (with the
    special tokens) and ``"formatted": true`` (so ``--tasks-file`` reads it back unchanged).
    """
    if str(path) != STDOUT:  # checked before any prompt is made
        path = out_file(path, "--export-tasks file")
    contexts = [context] if isinstance(context, int) else list(context)
    config = BenchConfig(model=model, tasks=list(tasks), contexts=contexts, samples=samples, seed=seed,
                         prompt_style=prompt_style, tasks_file=tasks_file, methods=["none"])
    config.validate()
    tokenizer = tokenizer or load_tokenizer(model)
    exported = []
    for sample in make_samples(config, tokenizer):
        if get_kind(sample.kind).measures != ANSWERS:
            raise TokenzipError(f"--export-tasks writes question-answering tasks; {sample.task} is {sample.kind}")
        prompt = format_sample(sample, tokenizer, prompt_style)
        for (question, prefix), q in zip(prompt.questions, sample.questions):
            exported.append({
                "id": sample.id, "task": sample.task, "length": sample.length, "index": sample.index,
                "context": prompt.context, "question": question, "answer_prefix": prefix, "answer": q.answers,
                "max_new_tokens": sample.max_new_tokens, "metric": sample.metric, "formatted": True,
                "model": model, "seed": seed, "context_tokens": len(tokenizer(prompt.context).input_ids),
                "metadata": sample.metadata})
    if str(path) == STDOUT:
        sys.stdout.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in exported)
    else:
        write_rows(path, exported)
    return len(exported)
