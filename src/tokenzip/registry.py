"""The one generic :class:`Registry`: named entries of one sort, filled on first use by importing every public module
of the packages that define them and the modules other installed packages name in an entry point group. It holds the
methods of every stage (``tokenzip.method.METHODS``), the decoder families (``tokenzip.models.families``), the offline
models (``tokenzip.models.catalog``) and the benchmark tasks and task kinds.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from tokenzip.errors import TokenzipError, unknown_name

T = TypeVar("T")


class Registry(Mapping[Hashable, T], Generic[T]):
    """Named entries of one sort (lm-evaluation-harness's registries and timm's ``@register_model`` are the
    models): a read-only mapping, filled on first use by importing every public module of ``packages`` (each
    file registers what it defines) and then the modules the ``entry_points`` group of other installed
    packages names. :meth:`add` checks each entry against ``base`` (a class, or the class of instances) and
    refuses a second entry under a taken key."""

    def __init__(self, noun: str, base: type, packages: tuple[str, ...] = (), entry_points: str | None = None
                 ) -> None:
        self.noun = noun  # what one entry is called, in messages ("task", "decoder family")
        self.base = base
        self.packages = packages
        self.entry_points = entry_points
        self._entries: dict[Hashable, T] = {}
        self._loaded = False

    def add(self, key: Hashable, entry: T) -> T:
        """Register ``entry`` under ``key``; returns it (so a decorator can return the class)."""
        is_class = isinstance(entry, type)
        if not (issubclass(entry, self.base) if is_class else isinstance(entry, self.base)):
            raise TypeError(f"a {self.noun} must be a {self.base.__name__}{' subclass' if is_class else ''}; "
                            f"got {entry!r}")
        if key in self._entries and self._entries[key] is not entry:
            raise TypeError(f"{self.noun} {key!r} is registered twice")
        self._entries[key] = entry
        return entry

    def remove(self, key: Hashable) -> None:
        """Take ``key`` out (tests that register a toy entry)."""
        del self._entries[key]

    def load(self) -> None:
        """Import the packages' modules and the entry points' modules, once per process."""
        if self._loaded:
            return
        self._loaded = True  # set first: the modules imported below register into this registry
        try:
            for package in self.packages:
                module = importlib.import_module(package)
                import_modules(package, module.__path__)
            if self.entry_points:
                _load_entry_points(self.entry_points)
        except BaseException:
            self._loaded = False
            raise

    def __getitem__(self, key: Hashable) -> T:
        self.load()
        return self._entries[key]

    def __iter__(self) -> Iterator[Hashable]:
        self.load()
        return iter(list(self._entries))  # in registration order

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def get_or_raise(self, key: Hashable, hint: str = "") -> T:
        """The entry under ``key``, or a :class:`TokenzipError` listing the known ones (closest first)."""
        if key not in self:
            raise unknown_name(self.noun, str(key), [str(k) for k in self], hint=hint)
        return self[key]


def import_modules(package: str, path: Iterable[str]) -> list[str]:
    """Import every public module of a package (sorted; names starting with ``_`` are skipped).

    A methods package calls ``import_modules(__name__, __path__)`` in its ``__init__``, so that each of its
    files registers its methods by being imported. Returns the imported module names.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(list(path)) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return [f"{package}.{name}" for name in names]


def _load_entry_points(group: str) -> None:
    """Import what each entry point of ``group`` names."""
    for point in importlib.metadata.entry_points(group=group):
        try:
            point.load()
        except Exception as error:  # a broken plugin names itself instead of failing somewhere inside
            raise TokenzipError(
                f"the {group} entry point {point.name!r} = {point.value!r} failed to load: "
                f"{type(error).__name__}: {error}"
            ) from error
