"""Packaged GGUF weights, dequantized once into a verified cache (Gemma 3 270M, SmolLM2-135M-Instruct).

The first load dequantizes the GGUF file with transformers' GGUF reader (about a minute on 2 CPU
cores) and writes the result (safetensors weights, ``config.json`` without the gguf
``quantization_config``, the tokenizer files) to the tokenzip cache with a manifest of sizes and
SHA-256 digests. Later loads verify the manifest and take a few seconds. A missing, partial or
corrupt cache is rebuilt, never loaded; builds are serialised across processes by a file lock and
written atomically (a temporary directory renamed into place).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Written for every model; the tokenizer may add more (e.g. ``chat_template.jinja``), which the manifest lists.
REQUIRED = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_files(directory: Path) -> dict[str, dict]:
    """The manifest's ``files`` entry (raises OSError / ValueError / KeyError when unreadable)."""
    return json.loads((directory / MANIFEST).read_text())["files"]


def verify(directory: Path, required: tuple[str, ...] = REQUIRED) -> str | None:
    """Return None when the cached copy is complete and intact, else what is wrong with it."""
    if not (directory / MANIFEST).is_file():
        return "no manifest (missing or partial cache)"
    try:
        entries = manifest_files(directory)
    except (ValueError, KeyError) as exc:
        return f"unreadable manifest: {exc}"
    names = list(dict.fromkeys([*required, *entries]))
    for name in names:  # cheap checks first
        path = directory / name
        if name not in entries or not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entries[name]["size"]:
            return f"{name} has {path.stat().st_size} bytes, manifest says {entries[name]['size']}"
    for name in names:
        if sha256(directory / name) != entries[name]["sha256"]:
            return f"{name} does not match its SHA-256"
    return None


def tokenizer_intact(directory: Path) -> bool:
    """Whether every file but the weights matches the manifest (a cheap check before reading the tokenizer alone:
    hashing the weights is for loading the model)."""
    try:
        entries = manifest_files(directory)
        names = [n for n in entries if n != "model.safetensors"]
        return "tokenizer.json" in names and all(sha256(directory / n) == entries[n]["sha256"] for n in names)
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Serialise cache builds across processes (parallel benchmark workers)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(directory: Path, build: Callable[[Path], None], name: str) -> Path:
    """``directory`` verified, built (or rebuilt) with ``build(directory)`` when missing or damaged."""
    if verify(directory) is None:
        return directory
    with build_lock(directory):
        problem = verify(directory)
        if problem is not None:
            if directory.exists():
                log.warning("tokenzip: rebuilding the %s cache in %s: %s", name, directory, problem)
            build(directory)
            problem = verify(directory)
            if problem is not None:
                raise RuntimeError(f"the freshly built {name} cache in {directory} is invalid: {problem}")
    return directory


def dequantize_into(directory: Path, name: str, obtain_gguf: Callable[[Path], Path]) -> None:
    """Dequantize the GGUF that ``obtain_gguf(scratch_dir)`` returns and write the cache to ``directory``
    atomically: weights (float32 safetensors), config (gguf quantization entry dropped), tokenizer, manifest."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent, prefix=f".{name}-build-") as tmp:
        tmp_path = Path(tmp)
        gguf_path = obtain_gguf(tmp_path)
        out = tmp_path / "out"
        out.mkdir()
        log.warning("tokenzip: first use of %s: dequantizing the GGUF weights once (about a minute)", name)
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        save_model(model, str(out / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config.pop("_name_or_path", None)
        config["architectures"] = config.get("architectures") or [type(model).__name__]  # loads as a local path too
        (out / "config.json").write_text(json.dumps(config, indent=2))
        tok.save_pretrained(str(out))
        written = sorted(p.name for p in out.iterdir() if p.is_file())
        files = {n: {"size": (out / n).stat().st_size, "sha256": sha256(out / n)} for n in written}
        (out / MANIFEST).write_text(json.dumps({"model": name, "files": files}, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        out.rename(directory)
    log.info("tokenzip: cached %s in %s (%.1f s)", name, directory, time.perf_counter() - start)


def load(directory: Path, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    """The causal LM and its tokenizer from a verified cache ``directory`` (returned by :func:`ensure`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, **kwargs)
    return model, AutoTokenizer.from_pretrained(str(directory))
