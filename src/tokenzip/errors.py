"""Errors tokenzip raises for bad input: each message says what to do instead."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from types import ModuleType


class TokenzipError(ValueError):
    """Bad input or an unsupported combination, found before any work is done."""


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


def unknown_name(what: str, name: str, known: Iterable[str], hint: str = "") -> TokenzipError:
    """An error for an unknown name that lists the known ones and the closest matches."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=3)
    msg = f"unknown {what} {name!r}."
    if close:
        msg += f" Did you mean {', '.join(repr(c) for c in close)}?"
    msg += f" Available: {', '.join(known)}."
    if hint:
        msg += f" {hint}"
    return TokenzipError(msg)


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import an optional dependency or raise an error naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        raise MissingDependencyError(
            f"{pkg} is needed for this and is not installed: pip install 'tokenzip[{extra}]'"
        ) from exc
