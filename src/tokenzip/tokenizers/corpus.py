"""Training text: the user's files, or a default corpus that every tokenzip install has offline.

The default corpus is the documentation that ships inside Python itself and inside tokenzip's own
dependencies: the docstrings of the standard library, numpy, torch, transformers, tokenizers and
tqdm. It is read at run time (nothing vendored), in a fixed order (packages in a fixed order,
files sorted by path), paragraphs deduplicated exactly (transformers copies docstrings between
models), capped at a fixed size, and split into training and held-out text by file, so no file
contributes to both. The result depends only on the installed package versions, which the corpus
records; it is cached under the tokenzip cache directory.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import sys
import sysconfig
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tokenzip.errors import TokenzipError
from tokenzip.textio import read_text, write_atomic

log = logging.getLogger(__name__)

STDLIB = "python"
DEFAULT_PACKAGES = (STDLIB, "numpy", "torch", "transformers", "tokenizers", "tqdm")
DEFAULT_MAX_BYTES = 16_000_000
DEFAULT_HELDOUT = 0.05
_FORMAT = 1  # bump when the extraction changes, to invalidate caches


@dataclass
class Corpus:
    """Training documents and held-out documents (each a string), with where they came from."""

    train: list[str]
    heldout: list[str]
    description: str
    meta: dict = field(default_factory=dict)

    @property
    def train_bytes(self) -> int:
        return sum(len(t.encode("utf-8")) for t in self.train)

    @property
    def heldout_bytes(self) -> int:
        return sum(len(t.encode("utf-8")) for t in self.heldout)


def _package_root(name: str) -> Path | None:
    if name == STDLIB:
        return Path(sysconfig.get_paths()["stdlib"])
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _version(name: str) -> str:
    if name == STDLIB:
        return sys.version.split()[0]
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _python_files(name: str, root: Path) -> list[Path]:
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        if name == STDLIB and (rel[0] in ("site-packages", "dist-packages", "test", "idlelib") or "tests" in rel):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def docstrings(source: str | bytes) -> Iterator[str]:
    """The module, class and function docstrings of one Python file, cleaned (dedented)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def _held_out(key: str, fraction: float) -> bool:
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_default_corpus(packages: Sequence[str] = DEFAULT_PACKAGES, max_bytes: int = DEFAULT_MAX_BYTES,
                         heldout: float = DEFAULT_HELDOUT) -> Corpus:
    """Docstring paragraphs of the installed ``packages`` (see the module docstring), not cached."""
    train: list[str] = []
    held: list[str] = []
    seen: set[bytes] = set()
    total = 0
    used: dict[str, str] = {}
    jobs = [(name, _package_root(name)) for name in packages]
    missing = [name for name, root in jobs if root is None]
    if missing:
        log.warning("tokenzip: default corpus: not installed, skipped: %s", ", ".join(missing))
    files = [(name, root, path) for name, root in jobs if root is not None for path in _python_files(name, root)]
    with tqdm(total=max_bytes, desc="default corpus (docstrings)", unit="B", unit_scale=True,
              disable=max_bytes < 2_000_000) as bar:
        for name, root, path in files:
            if total >= max_bytes:
                break
            used[name] = _version(name)
            key = f"{name}/{path.relative_to(root).as_posix()}"
            target = held if _held_out(key, heldout) else train
            try:
                source = path.read_bytes()
            except OSError:
                continue
            for doc in docstrings(source):
                for para in doc.split("\n\n"):
                    para = para.strip("\n")
                    digest = hashlib.blake2b(para.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                    if not para.strip() or digest in seen:
                        continue
                    seen.add(digest)
                    try:
                        size = len(para.encode("utf-8"))
                    except UnicodeEncodeError:
                        continue
                    target.append(para)
                    total += size
                    bar.update(size)
                    if total >= max_bytes:
                        break
                if total >= max_bytes:
                    break
    if not train or not held:
        raise TokenzipError(
            f"the default corpus came out empty (packages {', '.join(packages)}); pass training files instead"
        )
    description = "docstrings of " + ", ".join(f"{n} {v}" for n, v in used.items())
    meta = {"packages": used, "max_bytes": max_bytes, "heldout_fraction": heldout, "format": _FORMAT,
            "split": "by file (sha1 of package/path), paragraphs deduplicated exactly"}
    return Corpus(train, held, description, meta)


def _cache_path(packages: Sequence[str], max_bytes: int, heldout: float) -> Path:
    # lazy: keeps tokenzip.tokenizers free of torch (tokenzip.models loads it)
    from tokenzip.models.paths import cache_dir

    key = json.dumps({"p": {n: _version(n) for n in packages}, "m": max_bytes, "h": heldout, "f": _FORMAT},
                     sort_keys=True)
    return cache_dir() / "corpus" / f"default-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def default_corpus(packages: Sequence[str] = DEFAULT_PACKAGES, max_bytes: int = DEFAULT_MAX_BYTES,
                   heldout: float = DEFAULT_HELDOUT, cache: bool = True) -> Corpus:
    """The default training corpus (docstrings of installed packages), cached after the first build."""
    path = _cache_path(packages, max_bytes, heldout)
    if cache and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Corpus(data["train"], data["heldout"], data["description"], data["meta"])
        except (OSError, ValueError, KeyError):
            log.warning("tokenzip: rebuilding unreadable corpus cache %s", path)
    corpus = build_default_corpus(packages, max_bytes, heldout)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"train": corpus.train, "heldout": corpus.heldout,
                                       "description": corpus.description, "meta": corpus.meta}, ensure_ascii=False))
    return corpus


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file, or a TokenzipError that says what is wrong with it."""
    return read_text(path, "corpus file", stdin=False)


def corpus_from_files(paths: Sequence[str | Path], heldout: float = DEFAULT_HELDOUT,
                      heldout_files: Sequence[str | Path] = ()) -> Corpus:
    """Training text from the user's files; held-out text is ``heldout_files`` if given, else the
    last ``heldout`` fraction of the lines of each file (a contiguous tail, so it is not interleaved
    with the training text)."""
    if not paths:
        raise TokenzipError("no corpus files given")
    if not 0.0 <= heldout < 1.0:
        raise TokenzipError(f"heldout is a fraction in [0, 1), got {heldout}")
    train: list[str] = []
    held: list[str] = []
    for path in paths:
        lines = read_text_file(path).splitlines(keepends=True)
        held_lines = 0
        if heldout and not heldout_files and len(lines) >= 2:
            held_lines = max(1, int(len(lines) * heldout))
        cut = len(lines) - held_lines
        train += _documents(lines[:cut])
        held += _documents(lines[cut:])
    for path in heldout_files:
        held += _documents(read_text_file(path).splitlines(keepends=True))
    if not any(t.strip() for t in train):
        raise TokenzipError(
            f"the corpus ({', '.join(str(p) for p in paths)}) has no text to train on; give non-empty UTF-8 files"
        )
    names = ", ".join(Path(p).name for p in paths)
    return Corpus(train, held, f"files: {names}", {"files": [str(p) for p in paths], "heldout_fraction": heldout})


def _documents(lines: Sequence[str], max_chars: int = 1 << 16) -> list[str]:
    """Group lines into documents of at most ``max_chars`` characters (keeps memory per item small)."""
    docs, buf, size = [], [], 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= max_chars:
            docs.append("".join(buf))
            buf, size = [], 0
    if buf:
        docs.append("".join(buf))
    return [d for d in docs if d]
