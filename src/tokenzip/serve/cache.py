"""The compressed context cache: an LRU of compressed KV caches bounded by the bytes they really hold.

Keys are ``(model, exact context token ids, canonical spec[, question])``. A request takes the entry
itself (a Python reference) when it looks it up, so evicting the entry from the LRU while the request
still decodes from it only drops the LRU's reference: the request goes on with its copy, and the memory
is freed when the request ends. ``bytes`` counts what the LRU holds (``Compressed.bytes``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    """One cached context: its compressed cache and what it cost to build."""

    compressed: Any  # the runtime engine's tokenzip.engines.Compressed
    n_tokens: int  # context tokens (before compression)
    bytes: int  # bytes the compressed cache holds
    dense_bytes: int  # bytes the uncompressed prefill held
    stages: list[Any] = field(default_factory=list)  # how it was built: tokenzip.pipeline.StageRecord per stage
    prefill_seconds: float = 0.0  # the context's prefill (the kv stage's seconds are its compression)
    hits: int = 0


class ContextCache:
    """A thread-safe LRU of :class:`Entry` bounded by ``max_bytes`` (0 disables caching)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable) -> Entry | None:
        """The entry for ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            entry.hits += 1
            self.hits += 1
            return entry

    def put(self, key: Hashable, entry: Entry) -> bool:
        """Keep ``entry``, evicting the least recently used ones to fit; False when it alone is too big."""
        with self._lock:
            if entry.bytes > self.max_bytes:
                return False
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old.bytes
            while self._entries and self.bytes + entry.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.bytes
                self.evictions += 1
            self._entries[key] = entry
            self.bytes += entry.bytes
            return True

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0
