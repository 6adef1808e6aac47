"""Bench rows on disk: JSONL files, one row (a JSON object) per line.

Reading skips what an interrupted write or a foreign file leaves (each skip warned with the file and
line); appending (:class:`RowWriter`) flushes and fsyncs every row before the next, and a whole file
(:func:`write_rows`) is replaced atomically (``tokenzip.textio.write_atomic``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tokenzip.errors import TokenzipError
from tokenzip.textio import write_atomic

log = logging.getLogger(__name__)

REQUIRED = ("key", "method", "ratio", "score", "task", "length", "sample")
# measurements the report computes with: a number (or null) where present
MEASURED = ("achieved_ratio", "prefill_seconds", "compress_seconds", "decode_seconds", "decode_tokens_per_second",
            "cache_bytes", "cache_bytes_before", "peak_rss_bytes", "peak_cuda_bytes", "tokens_in", "tokens_kept",
            "new_tokens", "neighbours")


def numbered_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of every line of a JSONL file. A damaged line (cut by an interrupted
    write, or holding bytes that are not UTF-8) is skipped with a warning naming the file and line."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                log.warning("%s, line %d: not UTF-8 text (byte %d of the line); ignored", path, number, exc.start)
            except ValueError:
                log.warning("%s, line %d: not a complete row (an interrupted write?); ignored", path, number)


def read_rows(path: str | os.PathLike) -> list[Any]:
    """Rows of a JSONL file; damaged lines are skipped with a warning (see :func:`numbered_rows`)."""
    return [row for _, row in numbered_rows(Path(path))]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def row_problem(row: dict[str, Any]) -> str | None:
    """What makes a bench row unusable (a field of the wrong type), or None for a good row."""
    for name in ("key", "method", "task"):
        if not isinstance(row[name], str):
            return f"{name!r} is {row[name]!r}, not a string"
    for name in ("ratio", "score"):
        if not _number(row[name]):
            return f"{name!r} is {row[name]!r}, not a number"
    for name in ("length", "sample"):
        if not isinstance(row[name], int) or isinstance(row[name], bool):
            return f"{name!r} is {row[name]!r}, not an integer"
    for name in MEASURED:
        if row.get(name) is not None and not _number(row[name]):
            return f"{name!r} is {row[name]!r}, not a number"
    return None


def bench_rows(path: Path) -> list[dict[str, Any]]:
    """The usable bench rows of one JSONL file. Lines that are not bench rows (e.g. exported tasks) are
    counted in one warning; a damaged row (unreadable, or a field of the wrong type) is skipped with a
    warning naming the file and line."""
    rows, ignored = [], 0
    for number, row in numbered_rows(path):
        if not isinstance(row, dict) or not set(REQUIRED) <= set(row):
            ignored += 1
            continue
        problem = row_problem(row)
        if problem:
            log.warning("%s, line %d: a damaged row (%s); ignored", path, number, problem)
            continue
        rows.append(row)
    if ignored:
        log.warning("%s: %d lines are not bench rows (no %s; e.g. exported tasks): ignored",
                    path, ignored, "/".join(REQUIRED))
    return rows


def load_rows(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of every ``*.jsonl`` file in ``directory`` (duplicates of a key: the first one wins)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TokenzipError(f"{directory} is not a directory of bench results (run `tokenzip bench --out DIR`)")
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise TokenzipError(f"{directory} holds no *.jsonl rows (run `tokenzip bench --out {directory}` first)")
    rows, seen = [], set()
    for path in files:
        for row in bench_rows(path):
            ident = (row.get("engine", "tokenzip"), row["key"])
            if ident not in seen:
                seen.add(ident)
                rows.append(row)
    if not rows:
        raise TokenzipError(f"{directory} holds no bench rows")
    return rows


def _line(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_rows(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """Replace ``path`` with ``rows``, one JSON line each, atomically (fsync'ed; the old file or the new one)."""
    write_atomic(Path(path), "".join(_line(row) for row in rows))


class RowWriter:
    """Appends rows to a JSONL file, each flushed and fsync'ed before the next (nothing finished is lost)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "a", encoding="utf-8")
        if path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # an interrupted row: leave it, start on a new line
                    self.handle.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        self.handle.write(_line(row))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()
