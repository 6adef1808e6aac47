"""The task registry: tasks are found by name, with parameters in the name (``niah_single:haystack=prose``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tokenzip.bench.kinds.base import get_kind
from tokenzip.bench.tasks.base import Task
from tokenzip.errors import TokenzipError
from tokenzip.params import parse_value
from tokenzip.registry import Registry

TASKS: Registry[type[Task]] = Registry("task", Task, ("tokenzip.bench.tasks",))


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its ``name`` (a new task is one file with one of these)."""
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__name__} needs a name and a description")
    get_kind(cls.kind)  # an unknown kind fails here, not in the middle of a run
    return TASKS.add(cls.name, cls)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"name:key=value,key=value"`` -> ``(name, params)``, the values as written (each is read by the type of
    its parameter: :func:`tokenzip.params.parse_value`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise TokenzipError(f"a task is named by a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in item:
            raise TokenzipError(f"task parameters are key=value pairs; got {item!r} in {spec!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        if key in params:
            raise TokenzipError(f"parameter {key!r} given twice in {spec!r}")
        params[key] = value
    return name, params


def get_task(spec: str | Task) -> Task:
    """A task object from a spec string such as ``"kv_retrieval"`` or ``"niah_single:haystack=prose"``."""
    if isinstance(spec, Task):
        return spec
    name, texts = parse_spec(spec)
    cls = TASKS.get_or_raise(name, hint="`tokenzip bench --list-tasks` shows them.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(texts) - set(fields))
    if unknown:
        raise TokenzipError(f"task {name} has no parameter {', '.join(map(repr, unknown))}; "
                            f"its parameters are: {', '.join(sorted(fields)) or '(none)'}")
    params: dict[str, Any] = {}
    for key, text in texts.items():
        default = fields[key].default
        value = params[key] = parse_value(text, None if default is dataclasses.MISSING else type(default))
        if default is not dataclasses.MISSING and type(default) is float and type(value) is int:
            params[key] = float(value)
        elif default is not dataclasses.MISSING and type(value) is not type(default):
            raise TokenzipError(f"task {name}: {key} should be a {type(default).__name__}, got {value!r}")
    return cls(**params)


def list_tasks() -> list[dict[str, Any]]:
    """Rows for ``--list-tasks``: name, kind, metric, parameters and description."""
    rows = []
    for name, cls in sorted(TASKS.items()):
        params = ", ".join(f"{k}={v}" for k, v in cls().params().items())
        rows.append({"task": name, "kind": cls.kind, "metric": cls.metric, "params": params,
                     "description": cls.description})
    return rows
