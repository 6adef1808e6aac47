"""The model thread: requests that arrive together decode together (iteration-level batching).

One thread owns the model. It loops: take the requests that arrived, *start* each while there is room in
the batch (the backend builds or reuses its compressed context and returns a :class:`~tokenzip.models.rows.Row`
and the tokens to feed: the question after a cached context, or a whole short prompt), then run one forward
over every request still feeding its prompt (grouped by length, so padding stays small), then one forward
over every sequence that is decoding (one new token each; :class:`~tokenzip.models.decode_batch.DecodeBatch`
keeps their entries stacked from one step to the next). A request's ``n`` choices share its prompt's
forward, then decode as ``n`` rows. Each row has its own cache and validity masks (:mod:`tokenzip.models.rows`),
so a sequence's tokens are the ones it gets alone, whatever else shares its batch; a request leaves the batch
as soon as its last choice ends, and a waiting one takes its place at the next step.

**Why a path of its own** beside the runtime engine (:class:`tokenzip.engines.torch.TorchEngine`, whose
``generate`` decodes one sequence greedily from one compressed context, and which the torch backend uses for that,
for tokenizing, and to hold its compressed contexts): this path runs *several* sequences in one forward pass, each
with its own cache and masks, left-padded (:func:`~tokenzip.models.rows.forward_rows`,
:class:`~tokenzip.models.decode_batch.DecodeBatch`); it forks a prompt's row into ``n`` choices; it samples from the
logits (temperature, top-p, penalties, seeds, log-probabilities; the engine protocol yields greedy ids only); and it
steps every sequence one token at a time under the server's control, so requests join and leave between steps and a
cancelled one stops at the next. The engine protocol has none of these (one context, one sequence, no sampling).

Events go back through each request's ``emit`` (called on this thread): ``("piece", index, text, logprobs)``,
``("finish", index, reason)``, ``("done", stats)`` or ``("error", exception)``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tokenzip.models.decode_batch import DecodeBatch
from tokenzip.models.rows import Row, forward_rows
from tokenzip.serve.generate import Choice

Emit = Callable[[tuple], None]


class Startable(Protocol):
    """What the scheduler needs of a planned request (the backend's ``Job``)."""

    cancel: threading.Event
    max_tokens: int
    n: int

    def make_choices(self) -> list[Choice]: ...


@dataclass
class Started:
    """A request ready to run: its prompt row, the tokens to feed it, and what the backend reports about it."""

    row: Row
    feed: list[int]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Running:
    """A request on the model thread: its events' ``emit``, what it started from, its choices and their rows."""

    job: Any
    emit: Emit
    started: Started
    choices: list[Choice]
    rows: list[Row | None] = field(default_factory=list)  # one per choice once the prompt is fed
    first_token_at: float | None = None
    decode_steps: int = 0
    batch_rows: int = 0  # sum of the batch sizes of the decode steps this request took part in
    began: float = field(default_factory=time.perf_counter)

    @property
    def feeding(self) -> bool:
        return not self.rows

    def live(self) -> list[int]:
        return [i for i, c in enumerate(self.choices) if c.finish is None]

    @property
    def width(self) -> int:
        """Rows this request occupies in a batch."""
        return len(self.live()) if self.rows else len(self.choices)


class ModelThread:
    """One thread owns the model; other threads hand it requests (``submit``) and other work (``call``) through one
    queue of ``(verb, item, extra)`` messages that its ``_loop`` reads (the scheduler; llama.cpp's runner). A token is
    taken (:meth:`take_token`), a request ended (:meth:`end`) and one whose client went away dropped
    (:meth:`drop_waiting`, :meth:`cancel_running`) by the same code in both, so both report alike."""

    _inbox: queue.Queue
    _running: list[Running]
    eos: set[int]
    on_cancel: Callable[[], None] | None  # a request dropped because its client went away (for metrics)

    def _start_thread(self, name: str) -> None:
        self._inbox = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        raise NotImplementedError

    # --- any thread ----------------------------------------------------------------------------------
    def submit(self, job: Any, emit: Emit) -> None:
        """Queue ``job``; its events go to ``emit`` (on the model thread)."""
        self._inbox.put(("job", job, emit))

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Run other model work (the page) on the model thread, between two requests' steps."""
        future: Future = Future()
        self._inbox.put(("call", (fn, args, kwargs), future))
        return future

    def shutdown(self) -> None:
        self._inbox.put(("stop", None, None))

    # --- the model thread ----------------------------------------------------------------------------
    def take_token(self, r: Running, c: Choice, logits: torch.Tensor) -> None:
        """Choose ``c``'s next token from ``logits``, emit its text, and end the choice at an end-of-generation token,
        a stop sequence or ``max_tokens``."""
        token = c.choose(logits)
        r.first_token_at = r.first_token_at or time.perf_counter()
        if token in self.eos:
            c.finish = "stop"
        else:
            c.accept(token, logits)
            text, logprobs = c.piece(token)
            if text or logprobs:
                r.emit(("piece", c.index, text, logprobs))
            if c.detok.stopped:
                c.finish = "stop"
            elif len(c.tokens) >= r.job.max_tokens:
                c.finish = "length"
        if c.finish is not None:
            text, logprobs = c.finish_text()
            if text or logprobs:
                r.emit(("piece", c.index, text, logprobs))
            r.emit(("finish", c.index, c.finish))

    def end(self, r: Running) -> None:
        """The request is over: out of the running set, its ``done`` event (with the stats the usage reports) sent."""
        if r in self._running:
            self._running.remove(r)
        now = time.perf_counter()
        r.emit(("done", {
            "started": r.started, "first_token_at": r.first_token_at or now, "ended": now, "began": r.began,
            "completion_tokens": sum(len(c.tokens) for c in r.choices),
            "finish": [c.finish for c in r.choices],
            "batch_size_mean": r.batch_rows / r.decode_steps if r.decode_steps else 1.0,
            "cancelled": any(c.finish == "cancelled" for c in r.choices),
        }))

    def drop_waiting(self, emit: Emit) -> None:
        """A request whose client went away while it waited: its ``done`` event says it was cancelled."""
        emit(("done", {"cancelled": True}))
        if self.on_cancel:
            self.on_cancel()

    def cancel_running(self, r: Running) -> None:
        """A running request whose client went away: every choice not finished yet ends as ``cancelled``, and the
        request ends (:meth:`end`)."""
        for c in r.choices:
            c.finish = c.finish or "cancelled"
        self.end(r)
        if self.on_cancel:
            self.on_cancel()

    @staticmethod
    def _run_call(item: tuple, future: Future) -> None:
        """Run a ``call`` message's function and hand its result or exception to the caller's future."""
        fn, args, kwargs = item
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


class Scheduler(ModelThread):
    """Runs requests on one model thread, batching every step; ``start(job)`` (called on that thread) builds a
    request's context. ``max_batch`` bounds the rows decoded together (1: one request at a time)."""

    def __init__(self, model: Any, start: Callable[[Any], Started], eos: set[int], max_batch: int = 8,
                 on_step: Callable[[int], None] | None = None, on_cancel: Callable[[], None] | None = None
                 ) -> None:
        self.model, self.start, self.eos, self.max_batch = model, start, eos, max(1, max_batch)
        self.on_step = on_step  # (rows) after every forward, for metrics
        self.on_cancel = on_cancel
        self._waiting: list[tuple[Any, Emit]] = []
        self._running: list[Running] = []
        self._decoder = DecodeBatch(model)  # the decoding rows, stacked between steps
        self._stop = False
        self._start_thread("tokenzip-model")

    def shutdown(self) -> None:
        self._stop = True
        super().shutdown()

    # --- the model thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop:
            self._take(block=not (self._running or self._waiting))
            if self._stop:
                break
            self._drop_cancelled()
            self._start_waiting()
            try:
                feeding = [r for r in self._running if r.feeding]
                for group in _by_length(feeding):
                    self._feed(group)
                decoding = [r for r in self._running if not r.feeding]
                if decoding:
                    self._decode(decoding)
                else:
                    self._decoder.set_rows([])  # nothing decodes: free the stacked entries
            except Exception as exc:  # a failed forward fails the requests in it, never the thread
                for r in self._running:
                    r.emit(("error", exc))
                self._running.clear()
                self._decoder = DecodeBatch(self.model)
        for r in self._running:
            r.emit(("error", RuntimeError("the server is shutting down")))

    def _take(self, block: bool) -> None:
        while True:
            try:
                verb, item, extra = self._inbox.get(block=block, timeout=None)
            except queue.Empty:
                return
            block = False
            if verb == "stop":
                self._stop = True
                return
            if verb == "job":
                self._waiting.append((item, extra))
            else:
                self._run_call(item, extra)

    def _drop_cancelled(self) -> None:
        dropped = [w for w in self._waiting if w[0].cancel.is_set()]
        self._waiting = [w for w in self._waiting if not w[0].cancel.is_set()]
        for _, emit in dropped:
            self.drop_waiting(emit)
        for r in [r for r in self._running if r.job.cancel.is_set()]:
            self.cancel_running(r)

    def _start_waiting(self) -> None:
        used = sum(r.width for r in self._running)
        while self._waiting:
            job, emit = self._waiting[0]
            width = job.n
            if self._running and used + width > self.max_batch:
                return
            self._waiting.pop(0)
            try:
                started = self.start(job)
            except Exception as exc:  # this request's error (a 400 when it is tokenzip's), not the others'
                emit(("error", exc))
                continue
            self._running.append(Running(job, emit, started, job.make_choices()))
            used += width

    def _feed(self, group: list[Running]) -> None:
        logits = forward_rows(self.model, [r.started.row for r in group], [r.started.feed for r in group])
        if self.on_step:
            self.on_step(len(group))
        for r, row_logits in zip(group, logits):
            row = r.started.row
            r.rows = [row] + [row.fork() for _ in r.choices[1:]]
            for c in r.choices:
                self.take_token(r, c, row_logits)
            if not r.live():
                self.end(r)

    def _decode(self, running: list[Running]) -> None:
        slots = [(r, i) for r in running for i in r.live()]
        self._decoder.set_rows([r.rows[i] for r, i in slots])
        logits = self._decoder.step([r.choices[i].tokens[-1] for r, i in slots])
        if self.on_step:
            self.on_step(len(slots))
        for r in running:
            r.decode_steps += 1
            r.batch_rows += len(slots)
        for (r, i), row_logits in zip(slots, logits):
            self.take_token(r, r.choices[i], row_logits)
            if r.choices[i].finish is not None:
                r.rows[i] = None  # its cache can go
        for r in running:
            if not r.live():
                self.end(r)


def _by_length(running: list[Running]) -> list[list[Running]]:
    """Requests still feeding their prompt, grouped so that no group pads a prompt to more than twice its length
    (plus 16 tokens): one forward per group."""
    groups: list[list[Running]] = []
    for r in sorted(running, key=lambda r: len(r.started.feed)):
        if groups and len(r.started.feed) <= 2 * len(groups[-1][0].started.feed) + 16:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups
