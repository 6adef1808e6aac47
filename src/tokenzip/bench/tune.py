"""``tokenzip tune``: how to split a total effective KV compression across the stages and their methods.

The target is the fraction of the dense KV cache's bytes removed (0.75 = 4x), the effective compression the
report computes: the bytes the uncompressed model's cache holds for the original context over the bytes held
after the last stage. A configuration reaches a target when its compression (summed over the samples of each
task and context length) reaches it in every cell, within ``tolerance`` (a fraction of the dense bytes).

**The search: successive halving** (Jamieson & Talwalkar 2016, arXiv 1502.07943; Hyperband's inner loop, Li et
al. 2018) over a grid of candidates: every product of one option per stage (no method, or a method at one of
the stage's grid ratios). Why successive halving rather than a coarse grid refined around the best: an
evaluation costs prefills (and KVzip's second pass) per sample, scores are 0/1 per sample so close
configurations need many samples to tell apart while bad ones are plain after a few, and a refinement round
would need new full runs at new ratios whose gains sit inside the noise of a few samples. Successive halving
spends samples where they decide, and the runner's resumable rows make each rung reuse the samples a survivor
was already measured on. The rungs:

1. **Probe**: every candidate on ``first`` samples per cell (scores, and compressions, which hardly vary with the
   sample).
2. For each target, the candidates that reach it, less those another reaching candidate makes redundant: one
   with the same methods and no stage compressing more (quality is taken to fall as any stage's ratio rises,
   so only the least compressing way to reach a target per combination of methods is kept). A target no
   candidate reaches is **missed**: the candidates within 5% of the highest compression are kept instead,
   and the result says it missed.
3. Three brackets per target, raced separately: any configuration, single-stage only, composed only. Each
   rung keeps the best ``1/eta`` (score, then compression; two at least) and multiplies the samples by ``eta``,
   up to ``tune_samples`` per cell, where the best one is picked; every bracket's survivors run in one sweep
   per rung, so they share prefills.

The winners are then measured on ``report_seed``'s samples (``samples`` per cell) beside the uncompressed
model: the tuning seed never scores what is reported, and the two seeds' samples are checked to share no
context before any work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenzip.bench import runner
from tokenzip.bench.aggregate import removed_by_stage, stages_of
from tokenzip.bench.models import load, load_tokenizer
from tokenzip.bench.runner import BenchConfig, make_samples
from tokenzip.bench.tasks.registry import get_task
from tokenzip.errors import TokenzipError
from tokenzip.spec import PIPELINE_STAGES, PipelineSpec, StageSpec, parse, parse_item

DEFAULT_METHODS = {"prompt": ["prompt:extractive"], "layers": ["layers:fastv"], "kv": ["kv:kvzip"]}
DEFAULT_GRID = {"prompt": [0.5, 0.75, 0.875, 0.9375], "layers": [0.25, 0.5], "kv": [0.5, 0.75, 0.875]}
BRACKETS = ("any", "single", "composed")
MISSED_SLACK = 0.95  # a missed target keeps the candidates within 5% of the highest compression


@dataclass
class TuneConfig:
    """What ``tokenzip tune`` searches and how it measures (runner settings are passed to ``tz.bench.run``)."""

    targets: list[float]
    tasks: list[str]
    contexts: list[int]
    model: str = "gemma-3-270m"
    stages: list[str] = field(default_factory=lambda: list(PIPELINE_STAGES))
    methods: dict[str, list[str]] = field(default_factory=dict)
    grid: dict[str, list[float]] = field(default_factory=dict)
    samples: int = 16  # per cell, on the report seed
    tune_samples: int | None = None  # per cell at the last rung on the tuning seed (default: samples)
    first: int = 1  # per cell at the probe rung
    eta: int = 3
    tolerance: float = 0.01
    seed: int = 0
    report_seed: int = 1
    out: str = "results/tune"
    run: dict[str, Any] = field(default_factory=dict)  # workers, backend, threads, dtype, device, ... for the runner

    def validate(self) -> None:
        if not self.targets or any(not 0 < t < 1 for t in self.targets):
            raise TokenzipError(f"--target: fractions of the dense KV bytes removed, 0 < t < 1 (0.75 = 4x); "
                                f"got {self.targets}")
        if self.seed == self.report_seed:
            raise TokenzipError(f"--seed and --report-seed are both {self.seed}: tune on one, report on another")
        unknown = [s for s in self.stages if s not in PIPELINE_STAGES]
        if unknown or not self.stages:
            raise TokenzipError(f"--stages: some of {', '.join(PIPELINE_STAGES)}; got {', '.join(self.stages) or '-'}")
        for stage in self.methods:
            if stage not in self.stages:
                raise TokenzipError(f"a {stage} method was given but {stage} is not in --stages")
        if self.eta < 2 or self.first < 1 or self.samples < 1:
            raise TokenzipError("--eta >= 2, --first >= 1 and --samples >= 1")
        if self.tune_samples is not None and self.tune_samples < 1:
            raise TokenzipError(f"--tune-samples: samples per cell at the last rung, >= 1 (leave it out for "
                                f"--samples); got {self.tune_samples}")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not 0 <= self.tolerance < 1:  # also refuses nan
            raise TokenzipError(f"--tolerance: how far below a target still reaches it, a fraction of the dense KV "
                                f"bytes, 0 <= tolerance < 1; got {self.tolerance}")
        unknown = [s for s in self.grid if s not in self.stages]
        if unknown:
            raise TokenzipError(f"--grid gives ratios for {', '.join(unknown)}, which is not in --stages")
        for task in self.tasks:
            get_task(task)
        if not self.tasks or not self.contexts or any(c < 16 for c in self.contexts):
            raise TokenzipError("give tasks (tokenzip bench --list-tasks) and context lengths of 16 tokens or more")
        self.tune_samples = self.samples if self.tune_samples is None else self.tune_samples
        self.methods = {s: self.methods.get(s) or DEFAULT_METHODS[s] for s in self.stages}
        self.grid = {s: sorted(set(self.grid.get(s) or DEFAULT_GRID[s])) for s in self.stages}
        for stage in self.stages:
            for item in self.methods[stage]:  # bad items: the spec parser's message, before any work
                for ratio in self.grid[stage]:
                    _item(stage, item, ratio)


def _item(stage: str, item: str, ratio: float) -> StageSpec:
    text = item if item.startswith(f"{stage}:") else f"{stage}:{item}"
    if "@" in text:
        raise TokenzipError(f"--methods {item!r}: give the method without a ratio (the grid sets the ratios)")
    try:
        spec = parse_item(f"{text}@{ratio!r}")
    except TokenzipError as exc:
        raise TokenzipError(f"--methods {item!r}: {exc}") from None
    if spec.stage != stage:
        raise TokenzipError(f"--methods {item!r} is a {spec.stage} method, not a {stage} one")
    return spec


def candidates(config: TuneConfig) -> list[str]:
    """Every product of one option per stage (nothing, or a method at a grid ratio), as canonical spec texts, each
    once (a method given twice, in any spelling, is one option), less those that cannot run (:func:`runnable`)."""
    return [spec for spec in _products(config) if runnable(spec, config.contexts) is None]


def _products(config: TuneConfig) -> list[str]:
    options = []
    for stage in config.stages:
        items = {str(i): i for i in (_item(stage, m, r) for m in config.methods[stage] for r in config.grid[stage])}
        options.append([None, *items.values()])
    out: dict[str, None] = {}
    for combo in itertools.product(*options):
        items = tuple(s for s in combo if s is not None)
        if items:
            out[str(PipelineSpec(tuple(sorted(items, key=lambda s: PIPELINE_STAGES.index(s.stage)))))] = None
    return list(out)


def runnable(spec: str, contexts: Sequence[int]) -> str | None:
    """Why a candidate cannot run on every context length, or None. A layers method refuses an input shorter than
    the tokens it protects (e.g. fastv's first 4 and last 32): after a prompt stage keeping ``kept(n)`` of an
    ``n``-token context that is known before any work (the prompt stage keeps at most that many)."""
    parsed = parse(spec)
    layers = parsed.build("layers")
    if layers is None:
        return None
    prompt = parsed.build("prompt")
    lead, trail = layers.default_protect("decoder")
    lead = lead if layers.protect is None else layers.protect
    trail = trail if layers.protect_last is None else layers.protect_last
    for n in contexts:
        left = prompt.kept(n) if prompt is not None else n
        if left < lead + trail:
            return (f"{layers.name} protects {lead} + {trail} tokens but "
                    f"{'the prompt stage leaves' if prompt is not None else 'the context has'} about {left} of a "
                    f"{n}-token context")
    return None


# --- measured figures ------------------------------------------------------------------------------------
@dataclass
class Figures:
    """One configuration on a set of rows: mean score, samples, and the compression of its worst cell."""

    spec: str
    score: float
    n: int
    compression: float
    shares: dict[str, float]

    @property
    def removed(self) -> float:
        return 1.0 - 1.0 / self.compression

    @property
    def stages(self) -> list[str]:
        return stages_of(self.spec)


def figures(rows: list[dict[str, Any]], samples: int | None = None) -> dict[str, Figures]:
    """Per spec, over the rows of samples with an index below ``samples`` (all when None)."""
    by_spec: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if samples is None or r["sample"] < samples:
            by_spec[r["method"]].append(r)
    out = {}
    for spec, group in by_spec.items():
        dense: dict[tuple, float] = defaultdict(float)
        held: dict[tuple, float] = defaultdict(float)
        removed: dict[str, float] = defaultdict(float)
        for r in group:
            cell = (r["task"], r["length"])
            parts = removed_by_stage(r)
            dense[cell] += r["bytes_by_stage"]["dense"]
            held[cell] += parts["held"]
            for stage, value in parts.items():
                removed[stage] += value
        total = sum(dense.values())
        worst = min(dense[c] / held[c] if held[c] else math.inf for c in dense)
        out[spec] = Figures(spec, 100.0 * sum(r["score"] for r in group) / len(group), len(group), worst,
                            {s: v / total for s, v in removed.items()})
    return out


def reaches(f: Figures, target: float, tolerance: float) -> bool:
    return f.removed >= target - tolerance


def _ratios(spec: str) -> dict[str, tuple[str, float]]:
    """stage -> (the method without its ratio, ratio); absent stages are missing."""
    parsed = parse(spec)
    out = {}
    for s in parsed.stages:
        out[s.stage] = (str(dataclasses.replace(s, ratio=0.0)), float(s.ratio) if s.ratio != "auto" else 1.0)
    return out


def _no_more(a: dict[str, tuple[str, float]], b: dict[str, tuple[str, float]]) -> bool:
    """``a`` compresses no stage more than ``b``, with the same methods wherever ``a`` compresses."""
    return all(stage in b and b[stage][0] == method and ratio <= b[stage][1] for stage, (method, ratio) in a.items())


def pool(found: dict[str, Figures], target: float, tolerance: float) -> tuple[list[str], bool]:
    """The candidates worth racing for ``target`` and whether it is reached (False: the closest are kept)."""
    reaching = [s for s, f in found.items() if reaches(f, target, tolerance)]
    if not reaching:
        best = max(f.compression for f in found.values())
        return sorted(s for s, f in found.items() if f.compression >= MISSED_SLACK * best), False
    ratios = {s: _ratios(s) for s in reaching}
    kept = [s for s in reaching if not any(o != s and _no_more(ratios[o], ratios[s]) for o in reaching)]
    return sorted(kept), True


def in_bracket(spec: str, bracket: str) -> bool:
    n = len(stages_of(spec))
    return bracket == "any" or (bracket == "single" and n == 1) or (bracket == "composed" and n > 1)


def ranked(specs: Sequence[str], found: dict[str, Figures]) -> list[str]:
    """Best first: score, then compression, then the spec text (deterministic)."""
    return sorted(specs, key=lambda s: (-found[s].score, -found[s].compression, s))


# --- the search ---------------------------------------------------------------------------------------------
@dataclass
class Race:
    """One bracket of one target."""

    target: float
    bracket: str
    reached: bool
    alive: list[str]
    samples: int = 0  # per cell, of the last rung run

    @property
    def name(self) -> str:
        return f"{self.bracket} at {_x(self.target)}"


def _x(target: float) -> str:
    return f"{1 / (1 - target):g}x"


def sample_fingerprints(config: TuneConfig, seed: int, samples: int, tokenizer: Any) -> set[str]:
    """A hash of every sample's context and questions (``seed``'s sweep): tuning and report must not share one."""
    bench = BenchConfig(model=config.model, tasks=config.tasks, contexts=config.contexts, samples=samples, seed=seed,
                        methods=["none"])
    return {hashlib.sha256(json.dumps([s.context, [q.text for q in s.questions]]).encode()).hexdigest()
            for s in make_samples(bench, tokenizer)}


def tune(config: TuneConfig, log: Any = sys.stderr) -> dict[str, Any]:
    """Run the search and the report; returns (and writes to ``OUT/tune.json``) the picks and their figures."""
    config.validate()
    every = _products(config)
    specs = candidates(config)
    skipped = {spec: runnable(spec, config.contexts) for spec in every if spec not in specs}
    for spec, why in skipped.items():
        print(f"tune: skipped {spec}: {why}", file=log)
    if not specs:
        raise TokenzipError("no candidate of the grid can run on these context lengths (see above): give longer "
                            "--context or lower prompt ratios")
    run = dict(config.run)
    in_process = run.get("backend", "local") == "local" and run.get("workers", 1) == 1
    if in_process:
        import torch

        run.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
    loaded = load(config.model, run.get("dtype", "float32"), run.get("device")) if in_process else None
    tokenizer = loaded[1] if loaded else load_tokenizer(config.model)
    tuning = sample_fingerprints(config, config.seed, config.tune_samples, tokenizer)
    reported = sample_fingerprints(config, config.report_seed, config.samples, tokenizer)
    assert not tuning & reported, "a tuning sample is also a reported sample"
    out = Path(config.out)

    def sweep(names: Sequence[str], seed: int, samples: int, where: str) -> list[dict[str, Any]]:
        return runner.run(model=config.model, stage="pipeline", methods=list(names), tasks=config.tasks,
                          context=config.contexts, samples=samples, out=out / where, seed=seed, loaded=loaded,
                          summary=False, **run)

    def measure(names: Sequence[str], seed: int, samples: int, where: str) -> list[dict[str, Any]]:
        """The rows of ``names``; a candidate refused on some sample (a TokenzipError) is skipped with its message
        and the others are measured (the rows already written are reused: runs resume)."""
        try:
            return [r for r in sweep(names, seed, samples, where) if r["method"] not in skipped]
        except TokenzipError:
            rows: list[dict[str, Any]] = []
            for name in names:
                try:
                    rows = sweep([name], seed, samples, where)
                except TokenzipError as exc:
                    skipped[name] = str(exc)
                    print(f"tune: skipped {name}: {exc}", file=log)
            return [r for r in rows if r["method"] not in skipped]

    print(f"tune: {len(specs)} candidates, probe on {config.first} sample(s) per cell (seed {config.seed})", file=log)
    found = figures(measure(specs, config.seed, config.first, "tune"), config.first)
    if not any(s != "none" for s in found):
        raise TokenzipError("every candidate of the grid was refused (see above)")
    races = []
    for target in config.targets:
        for bracket in BRACKETS:
            mine = {s: f for s, f in found.items() if s != "none" and in_bracket(s, bracket)}
            if mine:
                names, reached = pool(mine, target, config.tolerance)
                races.append(Race(target, bracket, reached, names, config.first))
    samples = config.first
    while True:
        last = samples >= config.tune_samples
        for race in races:  # the best 1/eta of each bracket go on (two at least), one is left after the last rung
            race.alive = ranked(race.alive, found)[:1 if last else max(2, math.ceil(len(race.alive) / config.eta))]
        racing = sorted({s for r in races if len(r.alive) > 1 for s in r.alive})
        if last or not racing:
            break
        samples = min(config.tune_samples, samples * config.eta)
        print(f"tune: rung of {samples} samples per cell: {len(racing)} configurations", file=log)
        rows = measure(racing, config.seed, samples, "tune")
        found.update({s: f for s, f in figures(rows, samples).items() if s in racing})
        for race in races:  # refused on a new sample: out of the race (its first survivor stays if all were)
            race.alive = [s for s in race.alive if s not in skipped] or race.alive[:1]
        for race in races:
            if len(race.alive) > 1:
                race.samples = samples
    picks = sorted({r.alive[0] for r in races})
    print(f"report: {len(picks)} picks on seed {config.report_seed}, {config.samples} samples per cell", file=log)
    report_rows = measure(picks, config.report_seed, config.samples, "report")
    shown = figures(report_rows)
    result = {"config": _jsonable(config), "candidates": len(specs), "skipped": skipped, "races": [],
              "uncompressed": _fig(shown["none"])}
    for race in races:
        spec = race.alive[0]
        result["races"].append({"target": race.target, "bracket": race.bracket, "reached": race.reached,
                                "spec": spec, "tune": _fig(found[spec]),
                                "report": _fig(shown[spec]) if spec in shown else None})  # None: refused there
    (out / "tune.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _fig(f: Figures) -> dict[str, Any]:
    return {"score": f.score, "n": f.n, "compression": f.compression, "shares": f.shares}


def _jsonable(config: TuneConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items()}
