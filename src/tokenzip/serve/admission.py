"""Admission: how many requests the server holds at once, and when a refused client should come back.

Written once for every backend. A request is admitted when fewer than ``max_queue`` are waiting or running,
else refused with 429 and ``Retry-After``: the seconds the requests ahead need to drain, estimated from the
measured pace of the server, i.e. the busy seconds per completed request over the last completions (busy:
at least one request held). That pace already reflects batching (8 requests answered together in 4 s make
0.5 s each), and, unlike a request's latency, it does not count the time a request waited behind others.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from tokenzip.serve.errors import APIError
from tokenzip.serve.metrics import Metrics

_WINDOW = 32  # completions the pace is measured over
_UNMEASURED = 1.0  # seconds per request assumed before any completion


class Ticket:
    """One admitted request; :meth:`release` when it is answered (idempotent)."""

    def __init__(self, admission: Admission) -> None:
        self._admission, self._released = admission, False

    def release(self, completed: bool = True) -> None:
        """Count the request out; ``completed``: it was answered (its time counts in the measured pace)."""
        if not self._released:
            self._released = True
            self._admission._leave(completed)


class Admission:
    """A bound on the requests held (waiting or running), with a measured drain estimate for ``Retry-After``."""

    def __init__(self, max_queue: int, metrics: Metrics) -> None:
        self.max_queue, self.metrics = max_queue, metrics
        self.pending = 0
        self._lock = threading.Lock()
        self._paces: deque[float] = deque(maxlen=_WINDOW)
        self._mark = 0.0  # when the busy period began or the last request completed

    def enter(self) -> Ticket:
        """Admit a request, or raise 429 with ``Retry-After`` when ``max_queue`` are already held."""
        with self._lock:
            if self.pending >= self.max_queue:
                self.metrics.rejected.inc()
                wait = self.drain_seconds()
                raise APIError(429, f"the server is busy ({self.pending} requests held, at most {self.max_queue}); "
                               f"retry in {wait} s", type="rate_limit_error", code="queue_full",
                               headers={"Retry-After": str(wait)})
            if self.pending == 0:
                self._mark = time.perf_counter()
            self.pending += 1
            self.metrics.queue.set(self.pending)
        return Ticket(self)

    def drain_seconds(self) -> int:
        """Seconds (rounded, at least 1) the requests held need to complete at the measured pace."""
        return max(1, math.floor(self.pending * self.pace() + 0.5))

    def pace(self) -> float:
        """Busy seconds per completed request over the last completions."""
        return sum(self._paces) / len(self._paces) if self._paces else _UNMEASURED

    def _leave(self, completed: bool) -> None:
        with self._lock:
            now = time.perf_counter()
            if completed:
                self._paces.append(now - self._mark)
                self._mark = now
            self.pending -= 1
            self.metrics.queue.set(self.pending)
