"""Translation catalogs on this machine: gettext ``.mo`` files, found and read at run time.

A gettext catalog maps a source string (``msgid``, by convention English) to its translation
(``msgstr``) in one language; catalogs of the same program in several languages are therefore
parallel text aligned by ``msgid``. Catalogs are searched in the system locale directories
(``/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo``) and in the files of installed Python
distributions (e.g. Django's ``conf/locale``). Nothing is copied into tokenzip.
"""

from __future__ import annotations

import importlib.metadata
import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_LOCALE_DIRS = (Path("/usr/share/locale"), Path("/usr/local/share/locale"), Path("/usr/share/locale-langpack"))
_MAGIC_LE = 0x950412DE
_MAGIC_BE = 0xDE120495


@dataclass(frozen=True)
class Catalog:
    """One ``.mo`` file: its source (``system`` or a distribution name), domain, language and path."""

    source: str
    domain: str
    language: str
    path: Path


def normalize_language(code: str) -> str:
    """Locale directory names as language codes: ``pt-BR`` -> ``pt_BR``, ``sr@latin`` kept."""
    code = code.replace("-", "_")
    base, _, modifier = code.partition("@")
    lang, _, region = base.partition("_")
    out = lang.lower() + (f"_{region}" if region else "")
    return out + (f"@{modifier}" if modifier else "")


def _charset(header: str) -> str:
    for line in header.splitlines():
        if line.lower().startswith("content-type:") and "charset=" in line:
            return line.split("charset=", 1)[1].strip().split(";")[0] or "utf-8"
    return "utf-8"


def read_mo(path: str | Path) -> dict[str, str]:
    """Read a gettext ``.mo`` file into {msgid: msgstr}.

    Plural entries keep their singular forms; entries with a context (``msgctxt``) are keyed
    ``context\\x04msgid`` as in the file; the header (empty ``msgid``) and empty translations are
    dropped. Raises ``ValueError`` for a file that is not a ``.mo`` catalog.
    """
    data = Path(path).read_bytes()
    if len(data) < 28:
        raise ValueError(f"{path}: too short to be a .mo file")
    (magic,) = struct.unpack("<I", data[:4])
    if magic == _MAGIC_LE:
        order = "<"
    elif magic == _MAGIC_BE:
        order = ">"
    else:
        raise ValueError(f"{path}: not a gettext .mo file (bad magic number)")
    _, count, originals, translations = struct.unpack(order + "4I", data[4:20])

    def entry(table: int, i: int) -> bytes:
        length, offset = struct.unpack(order + "2I", data[table + 8 * i : table + 8 * i + 8])
        if offset + length > len(data):
            raise ValueError(f"{path}: entry {i} points outside the file")
        return data[offset : offset + length]

    raw = [(entry(originals, i), entry(translations, i)) for i in range(count)]
    header = next((s for m, s in raw if m == b""), b"").decode("utf-8", "replace")
    charset = _charset(header)
    out: dict[str, str] = {}
    for msgid, msgstr in raw:
        if not msgid or not msgstr:
            continue
        try:
            source = msgid.split(b"\x00")[0].decode(charset)
            target = msgstr.split(b"\x00")[0].decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        if target:
            out[source] = target
    return out


def _system_catalogs(roots: Iterable[Path]) -> Iterator[Catalog]:
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*/LC_MESSAGES/*.mo")):
            yield Catalog("system", path.stem, normalize_language(path.parent.parent.name), path)


def _package_catalogs() -> Iterator[Catalog]:
    seen: set[str] = set()
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if not name or name in seen:
            continue
        seen.add(name)
        for file in sorted(dist.files or [], key=str):
            parts = Path(str(file)).parts
            if file.suffix == ".mo" and len(parts) >= 3 and parts[-2] == "LC_MESSAGES":
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    # the domain is qualified by the app directory: django's admin and auth both ship django.mo
                    app = "/".join(parts[:-3])
                    yield Catalog(name, f"{app}:{path.stem}", normalize_language(parts[-3]), path)


def find_catalogs(system: bool = True, packages: bool = True,
                  roots: Iterable[str | Path] | None = None) -> list[Catalog]:
    """Every ``.mo`` catalog on this machine (system locale dirs, installed Python packages), sorted."""
    found: list[Catalog] = []
    if roots is not None:
        found += _system_catalogs(Path(r) for r in roots)
    elif system:
        found += _system_catalogs(SYSTEM_LOCALE_DIRS)
    if packages:
        found += _package_catalogs()
    return sorted(found, key=lambda c: (c.source, c.domain, c.language, str(c.path)))
