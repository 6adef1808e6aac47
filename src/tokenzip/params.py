"""Method parameters are checked when a method is built, against their annotations and declared ranges.

Every method is a dataclass, so its parameters' types are known from their annotations: an ``int``
parameter takes integers only (not ``True``, not ``"4"``), a ``float`` parameter any finite number, a
``bool`` ``True`` or ``False``, a ``str`` a string, and ``X | None`` also ``None``. Parameters of other
types (``Any``, tuples, method objects) are checked by the method itself. A method declares ranges as
class attributes, inherited and extended by subclasses::

    bounds = {"window_size": (1, None)}   # inclusive; None: unbounded on that side
    choices = {"bits": (2, 4, 8)}

A bad value is a :class:`~tokenzip.errors.TokenzipError` naming the method, the parameter, the value
with its type, and what is expected, raised by ``tz.get_method`` before any model runs.

Parameters written as text (a pipeline spec, a bench method such as ``extractive:reorder=none``, the CLI's
``--param key=value``) are read by one grammar, :func:`from_text`, which follows each parameter's annotation:
a ``str`` parameter keeps its text (``reorder=none`` is the string ``"none"``), ``X | None`` reads
``none``/``null`` as None, ``bool`` reads ``true``/``false``, ``int`` and ``float`` read numbers; a parameter of
another type reads ``true``/``false``, ``none``/``null``, an integer, a number or else the text. A parameter only
code can fill (an object, such as KVzip's ``tokenizer``; a method lists them in ``from_code``) is refused there.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any

from tokenzip.errors import TokenzipError

_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
INT64 = (-(2**63), 2**63 - 1)  # an integer parameter indexes tensors: it must fit their index type


def declared(cls: type, attribute: str) -> dict[str, Any]:
    """A class attribute dict (``bounds``, ``choices``) merged over the class hierarchy, subclasses last."""
    merged: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get(attribute, {}))
    return merged


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not evaluate: leave those parameters to the method
        return {}


def _simple_types(hint: Any) -> tuple[tuple[type, ...], bool] | None:
    """``(types, None allowed)`` for ``int``, ``float``, ``bool``, ``str`` and their unions with None; else None."""
    if hint in _NAMES:
        return (hint,), False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        rest = tuple(m for m in members if m is not type(None))
        if rest and all(m in _NAMES for m in rest):
            return rest, len(rest) < len(members)
    return None


def _is(value: Any, cls: type) -> bool:
    if isinstance(value, bool):
        return cls is bool
    if cls is int:
        return isinstance(value, numbers.Integral)
    if cls is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, cls)


def _expected(classes: tuple[type, ...], optional: bool, bound: tuple | None, choice: tuple | None) -> str:
    text = " or ".join(_NAMES[k] for k in classes)
    if choice is not None:
        text += ", one of " + ", ".join(map(repr, choice))
    elif bound is not None:
        lo, hi = bound
        if lo is not None and hi is not None:
            text += f" in [{lo}, {hi}]"
        elif lo is not None:
            text += f" >= {lo}"
        elif hi is not None:
            text += f" <= {hi}"
    return text + (" (or None)" if optional else "")


def _in_range(value: Any, bound: tuple | None, choice: tuple | None) -> bool:
    if choice is not None:
        return value in choice
    if bound is None or isinstance(value, (bool, str)):
        return True
    lo, hi = bound
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def parse_value(text: str, hint: Any = None) -> Any:
    """A parameter value written as ``text``, read by the parameter's annotation ``hint`` (see the module docstring);
    a text no annotated type reads is read by the general rule, so the method's check names what was expected."""
    text = text.strip()
    low = text.lower()
    simple = _simple_types(hint)
    if simple is not None:
        classes, optional = simple
        if low in ("none", "null") and optional:
            return None
        for cls in sorted(classes, key=(bool, int, float, str).index):
            value = _read(text, cls)
            if value is not None:
                return value
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cls in (int, float):
        value = _read(text, cls)
        if value is not None:
            return value
    return text


def _read(text: str, cls: type) -> Any:
    """``text`` as a ``cls`` value, or None when it is not one."""
    if cls is bool:
        return {"true": True, "false": False}.get(text.lower())
    if cls is str:
        return text
    try:
        return cls(text)
    except ValueError:
        return None


def code_only(cls: type) -> frozenset[str]:
    """The parameters of a method class that only code can fill (``from_code``, over the class hierarchy)."""
    return frozenset().union(*(vars(k).get("from_code", ()) for k in cls.__mro__))


def from_text(cls: type, params: dict[str, str], where: str = "") -> dict[str, Any]:
    """Parameters of method class ``cls`` written as text, read by :func:`parse_value`; a parameter only code can
    fill is refused with a message naming it (``where``: the text it came from, for the message)."""
    hints = _hints(cls)
    out = {}
    for key, text in params.items():
        if key in code_only(cls):
            raise TokenzipError(
                f"{where + ': ' if where else ''}{cls.stage}.{cls.name}'s parameter {key!r} is set from code, not "
                f"from text (it is an object: pass it as tz.get_method({cls.name!r}, {key}=...); tz.kv.answer, "
                "the pipeline and the server give it the model's own)"
            )
        out[key] = parse_value(text if isinstance(text, str) else str(text), hints.get(key))
    return out


def check_params(method: Any, skip: tuple[str, ...] = ("ratio", "budget")) -> None:
    """Check every init parameter of ``method`` (a method dataclass) against its annotation and declared range."""
    cls = type(method)
    hints, bounds, choices = _hints(cls), declared(cls, "bounds"), declared(cls, "choices")
    for field in dataclasses.fields(method):
        if not field.init or field.name in skip:
            continue
        simple = _simple_types(hints.get(field.name))
        if simple is None:
            continue
        classes, optional = simple
        value = getattr(method, field.name)
        if value is None and optional:
            continue
        bound, choice = bounds.get(field.name), choices.get(field.name)
        if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            raise TokenzipError(f"{method.stage}.{method.name}: parameter {field.name} must fit a 64-bit integer "
                                f"(what tensors are indexed with), got {value!r}")
        if not any(_is(value, k) for k in classes) or not _in_range(value, bound, choice):
            raise TokenzipError(
                f"{method.stage}.{method.name}: parameter {field.name} must be "
                f"{_expected(classes, optional, bound, choice)}, got {value!r} ({type(value).__name__})"
            )
