"""What a method is, and every method of every stage found by name (on the generic
:class:`~tokenzip.registry.Registry`).

A method is a small dataclass with a ``stage``, a ``paper`` and its parameters, built on :class:`Method` (each
stage's base class extends it: ``kv.base.KVMethod``, ``layers.base.LayersMethod``, ``prompt.base.PromptMethod``).
``ratio`` is the fraction of tokens removed (0 = no compression, always < 1) at every stage; ``budget`` (tokens
kept) may be given instead.

Where methods come from (loaded on the first lookup, so ``import tokenzip`` stays light):

- the built-in ones: every public module of ``tokenzip.kv.methods``, ``tokenzip.layers.methods`` and
  ``tokenzip.prompt.methods`` is imported (:func:`~tokenzip.registry.import_modules`), so a new method is one new
  file there whose class carries ``@register``;
- other packages: each entry point of the group ``tokenzip.methods`` names a module (or an object in one)
  that is imported the same way, e.g. in the other package's ``pyproject.toml``::

      [project.entry-points."tokenzip.methods"]
      mymethod = "mypackage.mymethod"     # a module whose classes carry @tokenzip.method.register
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from tokenzip.errors import TokenzipError, unknown_name
from tokenzip.params import check_params
from tokenzip.registry import Registry

# The stages that have methods (the tokenizer stage audits and trains tokenizers: ``tokenzip tokenizers``, no method
# objects; the benchmark measures the stages, it is not one)
STAGES = ("prompt", "layers", "kv")

# Packages whose import registers methods (each imports all its modules, see tokenzip.registry.import_modules).
_METHOD_MODULES = ("tokenzip.kv.methods", "tokenzip.layers.methods", "tokenzip.prompt.methods")
ENTRY_POINT_GROUP = "tokenzip.methods"  # other packages' methods: each entry point names a module to import


def check_ratio(ratio: float) -> float:
    """Validate a compression ratio (fraction of tokens removed)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TokenzipError(f"ratio must be a number in [0, 1), got {ratio!r}")
    if not 0.0 <= float(ratio) < 1.0:
        raise TokenzipError(
            f"ratio is the fraction of tokens removed and must satisfy 0 <= ratio < 1 (0 = no compression); "
            f"got {ratio}. To say how many tokens to keep, pass budget=N instead."
        )
    return float(ratio)


AUTO = "auto"  # ratio="auto": the method picks, per context (and layer), the largest ratio within a tolerance


def auto_methods() -> list[str]:
    """Names of the methods that accept ``ratio="auto"``."""
    return [f"{cls.stage}.{cls.name}" for cls in registered() if cls.auto_ratio]


def check_budget(budget: int | None) -> int | None:
    """Validate an absolute budget (number of tokens kept)."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget < 2**63:
        raise TokenzipError(f"budget is the number of tokens kept and must be an integer >= 1 (that fits 64 bits), "
                            f"got {budget!r}")
    return budget


@dataclass
class Method:
    """Base of every method: a named, registered, parameterised way to remove tokens.

    Subclasses set the class attributes ``name``, ``stage`` and ``paper`` and add their own
    dataclass fields as parameters, with their ranges in ``bounds`` and ``choices`` (see
    :mod:`tokenzip.params`); every parameter is checked when the method is built.
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    bounds: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    auto_ratio: ClassVar[bool] = False  # accepts ratio="auto": picks the ratio per context from an estimated loss
    from_code: ClassVar[tuple[str, ...]] = ()  # parameters only code can fill (objects): refused in any text

    ratio: float | str = 0.0
    budget: int | None = None

    def __post_init__(self) -> None:
        if self.ratio == AUTO:
            if not self.auto_ratio:
                raise TokenzipError(
                    f"{self.stage}.{self.name} cannot choose its own ratio (it has no estimate of what a ratio loses); "
                    f"give a number 0 <= ratio < 1, or use a method that accepts ratio='auto': "
                    f"{', '.join(auto_methods()) or 'none registered'}"
                )
        else:
            self.ratio = check_ratio(self.ratio)
        self.budget = check_budget(self.budget)
        if self.budget is not None and (self.ratio == AUTO or self.ratio > 0):
            raise TokenzipError(
                f"{self.stage}.{self.name}: give either ratio={self.ratio!r} (the fraction of tokens removed) or "
                f"budget={self.budget} (the tokens kept), not both")
        check_params(self)

    def kept(self, n: int) -> int:
        """Number of tokens kept out of ``n`` under this method's ratio or budget (all ``n`` for ratio="auto",
        which decides per context)."""
        if self.budget is not None:
            return min(n, self.budget)
        if self.ratio == AUTO:
            return n
        return n - int(n * self.ratio)

    def params(self) -> dict[str, Any]:
        """Current parameter values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def label(self) -> str:
        """``kv.snapkv (ratio 0.5)``: the method's name with its ratio or budget, for messages."""
        size = f"budget {self.budget}" if self.budget is not None else f"ratio {self.ratio}"
        return f"{self.stage}.{self.name} ({size})"

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.stage}.{self.name}({args})"


METHODS: Registry[type[Method]] = Registry("method", Method, _METHOD_MODULES, ENTRY_POINT_GROUP)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under (stage, name)."""
    if cls.stage not in STAGES:
        raise TypeError(f"{cls.__name__}.stage must be one of {STAGES}, got {cls.stage!r}")
    if not cls.name or not cls.paper:
        raise TypeError(f"{cls.__name__} needs a name and a paper reference")
    return METHODS.add((cls.stage, cls.name), cls)


def registered(stage: str | None = None) -> list[type[Method]]:
    """Every registered method class (built-in and from entry points), sorted by (stage, name);
    only ``stage``'s when given."""
    return [cls for (s, _), cls in sorted(METHODS.items()) if stage is None or s == stage]


def _resolve(name: str, stage: str | None) -> type[Method]:
    if stage is None and "." in name:
        stage, name = name.split(".", 1)
    if stage is not None and stage not in STAGES:
        raise unknown_name("stage", stage, STAGES)
    matches = [cls for (s, n), cls in METHODS.items() if n == name and (stage is None or s == stage)]
    if not matches:
        known = [n for (s, n) in METHODS if stage is None or s == stage]
        where = f"{stage} method" if stage else "method"
        raise unknown_name(where, name, known, hint="Run `tokenzip methods` to see them all.")
    if len(matches) > 1:
        options = ", ".join(f"'{c.stage}.{c.name}'" for c in matches)
        raise TokenzipError(f"method {name!r} exists in several stages; say which: {options} (or pass stage=...)")
    return matches[0]


def get_method(name: str, stage: str | None = None, **params: Any) -> Method:
    """Build a registered method by name, e.g. ``get_method("snapkv", ratio=0.5)``.

    ``name`` may be qualified by its stage (``"kv.random"``) where several stages share a name.
    """
    cls = _resolve(name, stage)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise TokenzipError(
            f"{cls.stage}.{cls.name} has no parameter {', '.join(map(repr, unknown))}; "
            f"its parameters are: {', '.join(sorted(fields))}"
        )
    return cls(**params)


def method_class(name: str, stage: str | None = None) -> type[Method]:
    """The registered class for a method name."""
    return _resolve(name, stage)


def methods(stage: str | None = None) -> list[dict[str, Any]]:
    """Registry rows: name, stage, paper and parameters with their defaults."""
    rows = []
    for cls in registered(stage):
        params = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.default is not dataclasses.MISSING:
                params[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                params[f.name] = f.default_factory()
            else:
                params[f.name] = None
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append({"name": cls.name, "stage": cls.stage, "paper": cls.paper,
                     "summary": doc[0] if doc else "", "params": params})
    return rows
