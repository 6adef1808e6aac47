"""Reading the user's text files (one function for every command, with errors that say what to do), and
writing files atomically."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Any

from tokenzip.errors import TokenzipError

STDIN = STDOUT = "-"  # a path of "-": standard input (reading) or standard output (writing)


def check_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a :class:`Path` if it names something readable as a file; else a clear error.

    A missing path, a directory and an unreadable file are told apart. Pipes and devices (``<(cmd)``,
    ``/dev/stdin``) are accepted: they are read like files.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise TokenzipError(f"{what} {path} is a directory, not a file: give the path of a text file inside it")
    if not p.exists():
        raise TokenzipError(f"{what} {path} does not exist (check the path; '-' reads standard input where allowed)")
    return p


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text, or an error naming ``where``, the line and byte of the first invalid byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TokenzipError(
            f"{where} is not UTF-8 text: invalid byte 0x{data[exc.start]:02x} at byte {exc.start} (line {line}). "
            "Convert it to UTF-8 first, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`"
        ) from exc


class InvalidText(TokenzipError):
    """Text no UTF-8 can hold; ``field``: where it is in the JSON data checked, as keys and list indices joined by
    dots (``messages.0.content``: the ``param`` of an OpenAI error), None at the top."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def check_text(value: Any, where: str) -> None:
    """Refuse text no UTF-8 can hold anywhere in ``value`` (a string, or JSON data: lists and objects), such as a
    lone surrogate (``"\\ud800"`` in JSON): an :class:`InvalidText` naming ``where``, the field and the position.
    Such a string cannot be tokenized, written to a file or sent on."""
    stack: list[tuple[Any, tuple[str | int, ...], bool]] = [(value, (), False)]
    while stack:
        item, parts, is_key = stack.pop()
        if isinstance(item, dict):
            stack += [(v, parts + (str(k),), False) for k, v in item.items()]
            stack += [(k, parts, True) for k in item if isinstance(k, str)]
        elif isinstance(item, list):
            stack += [(v, parts + (i,), False) for i, v in enumerate(item)]
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
                path = f"{path} (a key)" if is_key and path else "a key" if is_key else path
                raise InvalidText(
                    f"{where}{': field ' + path if path else ''} holds text that is not valid Unicode: "
                    f"{item[exc.start]!r} at character {exc.start} ({exc.reason}; a lone surrogate such as "
                    "'\\ud800' is half of a character): give valid UTF-8 text",
                    ".".join(str(p) for p in parts) or None,
                ) from None


def read_text(path: str | Path, what: str = "file", stdin: bool = True) -> str:
    """The UTF-8 text of ``path`` (``"-"``: standard input, when ``stdin``); a :class:`TokenzipError` that
    names ``what`` (e.g. "context file") and says what to do for a missing path, a directory, an
    unreadable file or bytes that are not UTF-8."""
    if stdin and str(path) == STDIN:
        buffer = getattr(sys.stdin, "buffer", None)  # absent when stdin was replaced by a text stream
        return decode_utf8(buffer.read(), "standard input") if buffer is not None else sys.stdin.read()
    p = check_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TokenzipError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    return decode_utf8(data, f"{what} {path}")


def out_dir(path: str | Path, what: str = "output directory") -> Path:
    """The directory ``path`` for output, created with its parents when missing; a :class:`TokenzipError` saying why
    it cannot be (a file is in the way, no permission) instead of an OSError."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise TokenzipError(f"{what} {path} exists and is not a directory: give a directory (created when missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TokenzipError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise TokenzipError(f"{what} {path} is not writable: give a directory you can write to")
    return p


def out_file(path: str | Path, what: str = "output file") -> Path:
    """The file ``path`` for output (its directory created when missing); a :class:`TokenzipError` when it is a
    directory or cannot be written, before anything is computed."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise TokenzipError(f"{what} {path} is a directory: give a file name")
    out_dir(p.parent, f"the directory of {what}")
    if p.exists() and not os.access(p, os.W_OK):
        raise TokenzipError(f"{what} {path} is not writable")
    return p


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` (text is written as UTF-8) so that a reader finds the old file or the whole new
    one, never a part, also after a crash: written to a temporary file in the same directory, flushed, fsync'ed,
    then renamed over ``path``."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
