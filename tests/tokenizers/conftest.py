"""Fixtures for the tokenizer stage: small real text, a .mo writer, tokenizers trained once per session."""

from __future__ import annotations

import struct
import sysconfig
from pathlib import Path

import pytest

from tokenzip.tokenizers.corpus import docstrings

STDLIB_FILES = ("argparse.py", "inspect.py", "typing.py", "subprocess.py", "pathlib.py", "dataclasses.py",
                "functools.py", "shutil.py", "tarfile.py", "email/message.py")

# text the tokenizers must survive exactly: emoji (with modifiers and ZWJ), CJK, combining marks, RTL, tabs
HARD_TEXTS = (
    "Thumbs up 👍🏽, family 👨‍👩‍👧‍👦 and flags 🇯🇵🇫🇷!",
    "日本語のテキストと中文文本，还有한국어 문장。",
    "Cafe\u0301 na\u0308ive re\u0301sume\u0301 — decomposed accents, and Ångström precomposed.",
    "नमस्ते दुनिया, यह एक परीक्षण है। مرحبا بالعالم",
    "key: value\n\ttabbed\r\nwindows line  two  spaces   three\n\n",
    "numbers 1234567 and 3.14159, <|endoftext|> is special-looking text",
)


def write_mo(path: Path, entries: dict[str, str], charset: str = "UTF-8") -> Path:
    """A minimal little-endian gettext .mo file (sorted keys, no hash table)."""
    entries = {"": f"Content-Type: text/plain; charset={charset}\n", **entries}
    keys = sorted(entries, key=lambda k: k.encode(charset))
    ids = [k.encode(charset) for k in keys]
    strs = [entries[k].encode(charset) for k in keys]
    n = len(keys)
    start = 28 + 16 * n
    offsets, blob = [], b""
    for s in ids + strs:
        offsets.append((len(s), start + len(blob)))
        blob += s + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    table = b"".join(struct.pack("<2I", *o) for o in offsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + table + blob)
    return path


@pytest.fixture(scope="session")
def hard_texts() -> list[str]:
    return list(HARD_TEXTS)


@pytest.fixture(scope="session")
def mo_writer():
    return write_mo


@pytest.fixture(scope="session")
def doc_texts() -> tuple[list[str], list[str]]:
    """Docstring paragraphs of a few stdlib modules (~130 kB): training set, held-out set (+ hard texts)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    paragraphs = []
    for name in STDLIB_FILES:
        for doc in docstrings((root / name).read_bytes()):
            paragraphs += [p for p in doc.split("\n\n") if p.strip()]
    heldout = paragraphs[::10]
    train = [p for i, p in enumerate(paragraphs) if i % 10] + list(HARD_TEXTS[:3]) * 3
    return train, heldout + list(HARD_TEXTS)


@pytest.fixture(scope="session")
def superbpe_small(doc_texts):
    from tokenzip.tokenizers.superbpe import train_superbpe

    train, _ = doc_texts
    return train_superbpe(train, vocab_size=1500, transition=700, progress=False)
