"""Pipeline specs: one line of text that names at most one method per stage.

Used alike by the pipeline (:func:`tokenzip.pipeline.pipeline`), the benchmark (``tokenzip bench --pipeline``)
and the server (``compression`` field, ``--compression``). Grammar::

    spec    := "" | "none" | item ( "|" item )*
    item    := stage ":" method [ ":" params ] [ "@" ratio ]
    stage   := "prompt" | "layers" | "kv"
    params  := key "=" value ( "," key "=" value )*
    ratio   := a number with 0 <= ratio < 1 (the fraction of tokens removed, as everywhere in tokenzip),
               or "auto" for methods that pick it per context (``kv:kvzip_fast@auto``)

Examples: ``"kv:kvzip@0.5"``, ``"prompt:extractive@0.5 | layers:fastv@0.3 | kv:kivi:bits=4,evict=kvzip@0.5"``,
``"kv:snapkv:budget=512"``. Values are read by each parameter's type (:func:`tokenzip.params.from_text`, the
grammar of every text that sets parameters): a text parameter keeps its text (``reorder=none``), an optional
one reads ``none``/``null`` as None, flags read ``true``/``false``, numbers read numbers; parameters only code
can fill (KVzip's ``tokenizer``) are refused. An absolute budget (tokens or
entries kept) is the ``budget=N`` parameter, which every method has; ``ratio=R`` may be written as a
parameter too, but not together with ``@R``. Whitespace around separators is ignored. A stage appears at
most once; wrappers such as ``kivi:evict=kvzip`` count as one method.

``str(spec)`` gives the canonical text: stages in pipeline order (prompt, layers, kv), parameters sorted,
those equal to the method's default left out, so equal pipelines have equal text.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from tokenzip.errors import TokenzipError, unknown_name
from tokenzip.method import AUTO, Method, check_budget, check_ratio, get_method, method_class
from tokenzip.params import from_text

PIPELINE_STAGES = ("prompt", "layers", "kv")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = set("|@:,=")


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, Method):
        return value.name
    return repr(value) if isinstance(value, float) else str(value)


def _writable(value: Any) -> bool:
    """Whether a parameter value can be written in a spec text (numbers, text, flags, methods, their tuples)."""
    if isinstance(value, (tuple, list)):
        return all(_writable(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str, Method))


def _defaults(cls: type[Method]) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.init and f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


def _is_default(defaults: dict[str, Any], key: str, value: Any) -> bool:
    if key not in defaults:
        return False
    default = defaults[key]
    return type(default) is type(value) and default == value  # bits=4.0 is not the default 4: the method checks it


@dataclass(frozen=True)
class StageSpec:
    """One stage of a pipeline: a registered method, its parameters and its ratio or budget."""

    stage: str
    method: str
    params: tuple[tuple[str, Any], ...] = ()
    ratio: float | str = 0.0  # or "auto"
    budget: int | None = None

    def build(self) -> Method:
        """A fresh method object (each call returns a new one, so requests never share state)."""
        try:
            return get_method(self.method, stage=self.stage, ratio=self.ratio, budget=self.budget,
                              **dict(self.params))
        except TokenzipError as exc:
            raise TokenzipError(f"{self}: {exc}") from exc
        except (TypeError, ValueError) as exc:  # a method's own checks on a parameter's type
            raise TokenzipError(f"{self}: bad parameter: {exc}") from exc

    @property
    def kwargs(self) -> dict[str, Any]:
        """Parameters other than ratio and budget."""
        return dict(self.params)

    def __str__(self) -> str:
        text = f"{self.stage}:{self.method}"
        params = list(self.params) + ([("budget", self.budget)] if self.budget is not None else [])
        if params:
            text += ":" + ",".join(f"{k}={_render(v)}" for k, v in sorted(params))
        if self.ratio and self.budget is None:
            text += f"@{self.ratio}" if self.ratio == AUTO else f"@{self.ratio!r}"
        return text


@dataclass(frozen=True)
class PipelineSpec:
    """At most one method per stage, in pipeline order. ``str()`` is the canonical spec text."""

    stages: tuple[StageSpec, ...] = ()

    def get(self, stage: str) -> StageSpec | None:
        """The spec of ``stage``, or None when the pipeline has no method there."""
        if stage not in PIPELINE_STAGES:
            raise unknown_name("pipeline stage", stage, PIPELINE_STAGES)
        return next((s for s in self.stages if s.stage == stage), None)

    def build(self, stage: str) -> Method | None:
        """A fresh method object for ``stage`` (None when the stage is empty)."""
        s = self.get(stage)
        return s.build() if s else None

    def without(self, *stages: str) -> PipelineSpec:
        """The same pipeline with ``stages`` removed."""
        return PipelineSpec(tuple(s for s in self.stages if s.stage not in stages))

    def __bool__(self) -> bool:
        return bool(self.stages)

    def __str__(self) -> str:
        return " | ".join(str(s) for s in self.stages) or "none"


def _parse_params(item: str, text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if "=" not in part:
            raise TokenzipError(f"bad parameter {part!r} in {item!r}: write key=value, several separated by commas")
        key, value = (x.strip() for x in part.split("=", 1))
        if not _NAME.match(key):
            raise TokenzipError(f"bad parameter name {key!r} in {item!r}")
        if key in params:
            raise TokenzipError(f"parameter {key!r} given twice in {item!r}")
        if not value:
            raise TokenzipError(f"parameter {key!r} has no value in {item!r}")
        params[key] = value
    return params


def _parse_ratio(item: str, text: str) -> float | str:
    if text.strip().lower() == AUTO:  # the method picks it per context (methods with ratio="auto")
        return AUTO
    try:
        value = float(text.strip())
    except ValueError:
        raise TokenzipError(
            f"bad ratio {text.strip()!r} in {item!r}: after '@' write the fraction of tokens removed, "
            "0 <= ratio < 1 (e.g. @0.5); for a number of tokens kept write budget=N as a parameter"
        ) from None
    try:
        return check_ratio(value)
    except TokenzipError as exc:
        raise TokenzipError(f"bad ratio in {item!r}: {exc}") from None


def parse_item(item: str) -> StageSpec:
    """Parse one ``stage:method[:k=v,...][@ratio]`` item and check it builds."""
    raw = item.strip()
    if not raw:
        raise TokenzipError("empty stage in the spec (two '|' in a row, or a trailing '|')")
    body, ratio_text = raw.rsplit("@", 1) if "@" in raw else (raw, None)
    parts = body.split(":", 2)
    if len(parts) < 2:
        raise TokenzipError(
            f"bad stage {raw!r}: write stage:method[:key=value,...][@ratio], e.g. 'kv:snapkv@0.5' "
            f"(stages: {', '.join(PIPELINE_STAGES)})"
        )
    stage, name = parts[0].strip(), parts[1].strip()
    if stage not in PIPELINE_STAGES:
        raise unknown_name("pipeline stage", stage, PIPELINE_STAGES, hint=f"(in {raw!r})")
    if not _NAME.match(name):
        raise TokenzipError(f"bad method name {name!r} in {raw!r}")
    texts = _parse_params(raw, parts[2]) if len(parts) == 3 and parts[2].strip() else {}
    cls = method_class(name, stage)  # unknown method: an error listing the stage's methods
    params = from_text(cls, texts, repr(raw))  # each value read by its parameter's type; objects refused
    ratio = 0.0
    if ratio_text is not None:
        if "ratio" in params:
            raise TokenzipError(f"{raw!r} gives the ratio twice (ratio= and @): keep one")
        ratio = _parse_ratio(raw, ratio_text)
    elif "ratio" in params:
        ratio = _parse_ratio(raw, str(params.pop("ratio")))
    budget = params.pop("budget", None)
    if budget is not None:
        try:
            budget = check_budget(budget)
        except TokenzipError as exc:
            raise TokenzipError(f"bad budget in {raw!r}: {exc}") from None
        if ratio:
            raise TokenzipError(f"{raw!r} gives both a ratio and a budget: keep one")
    defaults = _defaults(cls)
    kept = tuple(sorted((k, v) for k, v in params.items() if not _is_default(defaults, k, v)))
    for key, value in kept:
        if isinstance(value, str) and (set(value) & _RESERVED):
            raise TokenzipError(f"parameter {key}={value!r} in {raw!r} holds a reserved character (| @ : , =)")
    spec = StageSpec(stage, cls.name, kept, ratio, budget)
    spec.build()  # unknown parameters and the method's own checks fail here, before any work
    return spec


def parse(text: str | PipelineSpec | None) -> PipelineSpec:
    """Parse a pipeline spec (see the module docstring for the grammar); raises TokenzipError when bad."""
    if isinstance(text, PipelineSpec):
        return text
    if text is None:
        return PipelineSpec()
    if not isinstance(text, str):
        raise TokenzipError(f"a pipeline spec is a string such as 'kv:kvzip@0.5', got {type(text).__name__}")
    if text.strip().lower() in ("", "none"):
        return PipelineSpec()
    items = [parse_item(part) for part in text.split("|")]
    seen: dict[str, StageSpec] = {}
    for item in items:
        if item.stage in seen:
            raise TokenzipError(
                f"two {item.stage} methods in one spec ({seen[item.stage]} and {item}): a pipeline holds at most "
                f"one method per stage; combine kv eviction with quantization through a wrapper, "
                f"e.g. 'kv:kivi:bits=4,evict=snapkv@0.5'"
            )
        seen[item.stage] = item
    return PipelineSpec(tuple(seen[s] for s in PIPELINE_STAGES if s in seen))


def from_methods(**methods: Method | str | None) -> PipelineSpec:
    """A spec from method objects or per-stage spec items, e.g. ``from_methods(kv=get_method("snapkv", ratio=.5))``.

    Only parameters that differ from the method's defaults are kept; a nested method parameter (a wrapper's
    ``evict=`` or ``base=``) is written by name, so its own non-default parameters are not carried, and an
    object no spec text can hold (a tokenizer) is left out (``tz.pipeline`` keeps the method object itself).
    """
    items = []
    for stage, method in methods.items():
        if stage not in PIPELINE_STAGES:
            raise unknown_name("pipeline stage", stage, PIPELINE_STAGES)
        if method is None:
            continue
        if isinstance(method, str):
            text = method if method.startswith(f"{stage}:") else f"{stage}:{method}"
            items.append(text)
            continue
        if not isinstance(method, Method) or method.stage != stage:
            raise TokenzipError(f"{stage}= expects a {stage} method from tz.get_method, got {method!r}")
        defaults = _defaults(type(method))
        params = {k: v for k, v in method.params().items()
                  if k not in ("ratio", "budget") and _writable(v) and not _is_default(defaults, k, v)}
        if method.budget is not None:
            params["budget"] = method.budget
        text = f"{stage}:{method.name}"
        if params:
            text += ":" + ",".join(f"{k}={_render(v)}" for k, v in sorted(params.items()))
        if method.ratio and method.budget is None:
            text += f"@{method.ratio}" if method.ratio == AUTO else f"@{method.ratio!r}"
        items.append(text)
    return parse(" | ".join(items))
