"""llama.cpp through llama-cpp-python's low-level API: a GGUF model, and a context whose cache tokenzip operates on.

:class:`LlamaModel` loads a GGUF and tokenizes; :class:`LlamaContext` decodes tokens at given positions into one
sequence and does the cache surgery an engine needs: positions removed (``llama_memory_seq_rm``, every layer at once:
a cell holds one position), positions queried (``llama_memory_seq_pos_min/max``, and one position at a time through a
scratch sequence), a sequence's cache saved and restored (``llama_state_seq_get_data`` / ``set_data``), and a
callback reading tensors while a pass runs (the context parameter ``cb_eval``).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tokenzip.errors import MissingDependencyError, TokenzipError, require

SEQ = 0  # the sequence that holds the context
PROBE = 1  # a scratch sequence: position queries, one position at a time
NEEDED = ("llama_memory_seq_rm", "llama_memory_seq_pos_min", "llama_memory_seq_pos_max", "llama_memory_seq_cp",
          "llama_state_seq_get_data", "llama_state_seq_set_data", "llama_model_n_swa", "llama_model_rope_type")
_KEEP: list[Any] = []  # ctypes callbacks handed to llama.cpp must outlive every call


@functools.cache
def llama() -> Any:
    """The ``llama_cpp`` module (``tokenzip[llamacpp]``), its backend started and its log silenced, once."""
    module = require("llama_cpp", "llamacpp", "llama-cpp-python")
    missing = [name for name in NEEDED if not hasattr(module, name)]
    if missing:
        version = getattr(module, "__version__", "?")
        raise MissingDependencyError(f"llama-cpp-python {version} lacks {', '.join(missing)}: pip install -U "
                                     "'tokenzip[llamacpp]'")
    module.llama_backend_init()
    quiet = module.llama_log_callback(lambda level, text, data: None)
    _KEEP.append(quiet)
    module.llama_log_set(quiet, None)
    return module


class Freed:
    """An owner of llama.cpp memory: :meth:`close` frees it (idempotent), and so does garbage collection."""

    def close(self) -> None:
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class LlamaModel(Freed):
    """A GGUF file loaded by llama.cpp: its shape, metadata and tokenizer."""

    def __init__(self, path: str | Path) -> None:
        lib = llama()
        self.path = Path(path)
        if not self.path.is_file():
            raise TokenzipError(f"no GGUF file at {self.path}")
        self.handle = lib.llama_model_load_from_file(str(self.path).encode(), lib.llama_model_default_params())
        if not self.handle:
            raise TokenzipError(f"llama.cpp could not load {self.path} (not a GGUF model it supports?)")
        self.vocab = lib.llama_model_get_vocab(self.handle)
        self.arch = self.meta("general.architecture") or "?"
        self.n_layer = lib.llama_model_n_layer(self.handle)
        self.n_head = lib.llama_model_n_head(self.handle)
        self.n_head_kv = lib.llama_model_n_head_kv(self.handle)
        self.n_embd = lib.llama_model_n_embd(self.handle)
        self.n_swa = lib.llama_model_n_swa(self.handle)
        self.n_ctx_train = lib.llama_model_n_ctx_train(self.handle)
        self.rope_type = lib.llama_model_rope_type(self.handle)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.head_dim = int(self.meta(f"{self.arch}.attention.key_length") or self.n_embd // self.n_head)

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None."""
        buf = ctypes.create_string_buffer(1024)
        n = llama().llama_model_meta_val_str(self.handle, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def meta_float(self, key: str, default: float) -> float:
        value = self.meta(key)
        return float(value) if value not in (None, "") else default

    def tokenize(self, text: str, special: bool) -> list[int]:
        """Token ids of ``text``; ``special``: add the model's BOS (as a context starts). Special tokens written in
        the text (a chat template's ``<|im_start|>``) are read as such, as Hugging Face tokenizers read them."""
        data = text.encode("utf-8")
        size = len(data) + 16
        tokens = (llama().llama_token * size)()
        n = llama().llama_tokenize(self.vocab, data, len(data), tokens, size, special, True)
        if n < 0:
            size = -n
            tokens = (llama().llama_token * size)()
            n = llama().llama_tokenize(self.vocab, data, len(data), tokens, size, special, True)
        return list(tokens[:n])

    def detokenize(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        if not ids:
            return ""
        tokens = (llama().llama_token * len(ids))(*ids)
        size = 8 * len(ids) + 64
        buf = ctypes.create_string_buffer(size)
        n = llama().llama_detokenize(self.vocab, tokens, len(ids), buf, size, True, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n + 1)
            n = llama().llama_detokenize(self.vocab, tokens, len(ids), buf, -n + 1, True, False)
        return buf.raw[:n].decode("utf-8", "replace")

    def is_end(self, token: int) -> bool:
        """Whether ``token`` ends generation (llama.cpp's end-of-generation set)."""
        return bool(llama().llama_vocab_is_eog(self.vocab, token))

    @property
    def bos(self) -> int | None:
        token = llama().llama_vocab_bos(self.vocab)
        return None if token < 0 else int(token)

    def close(self) -> None:
        if getattr(self, "handle", None):
            llama().llama_model_free(self.handle)
            self.handle = None


class LlamaContext(Freed):
    """A llama.cpp context (its own KV cache of ``n_ctx`` cells) over :data:`SEQ`, with :data:`PROBE` as scratch.

    ``on_tensor(tensor, ask)`` is called for every node of every pass (llama.cpp's ``cb_eval``): with
    ``ask=True`` it says whether it wants the node's data, then it is called again with ``ask=False`` once the data
    is computed. ``flash_attn`` follows llama-cpp-python's ``Llama`` (off by default), so an uncompressed pass is
    computed as plain llama.cpp computes it.
    """

    def __init__(self, model: LlamaModel, n_ctx: int, n_batch: int = 512, threads: int = 1,
                 flash_attn: bool = False, on_tensor: Callable[[int, bool], bool] | None = None) -> None:
        lib = llama()
        self.model = model
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = 2
        params.kv_unified = True  # one buffer: a probe copies no data
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if on_tensor is not None:
            callback = lib.ggml_backend_sched_eval_callback(lambda t, ask, data: bool(on_tensor(t, ask)))
            _KEEP.append(callback)
            self._callback = callback
            params.cb_eval = callback
        self.handle = lib.llama_init_from_model(model.handle, params)
        if not self.handle:
            raise TokenzipError(f"llama.cpp could not create a context of {n_ctx} cells for {model.path.name}")
        self.n_ctx = lib.llama_n_ctx(self.handle)
        self.n_batch = n_batch
        self.memory = lib.llama_get_memory(self.handle)
        self.batch = lib.llama_batch_init(n_batch, 0, 1)

    # --- passes ------------------------------------------------------------------------------------------
    def decode(self, tokens: list[int], start: int, logits: str = "last", seq: int = SEQ) -> None:
        """Feed ``tokens`` at positions ``start, start + 1, ...`` in batches of ``n_batch``; ``logits``: ``"last"``
        (the last token's), ``"all"`` or ``"none"``."""
        lib = llama()
        for offset in range(0, len(tokens), self.n_batch):
            part = tokens[offset : offset + self.n_batch]
            last_part = offset + self.n_batch >= len(tokens)
            b = self.batch
            b.n_tokens = len(part)
            for i, token in enumerate(part):
                b.token[i] = token
                b.pos[i] = start + offset + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = logits == "all" or (logits == "last" and last_part and i == len(part) - 1)
            code = lib.llama_decode(self.handle, b)
            if code != 0:
                raise TokenzipError(f"llama.cpp could not decode {len(part)} tokens at position {start + offset} "
                                    f"(code {code}; the context holds {self.n_ctx} cells)")

    def logits(self, i: int = -1) -> np.ndarray:
        """The logits of output ``i`` of the last pass (``-1``: the last one), ``(n_vocab,)`` float32."""
        ptr = llama().llama_get_logits_ith(self.handle, i)
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,)).copy()

    # --- the cache ----------------------------------------------------------------------------------------
    def remove(self, p0: int, p1: int, seq: int = SEQ) -> None:
        """Remove positions ``[p0, p1)`` of ``seq`` from every layer (``p1 < 0``: to the end)."""
        if not llama().llama_memory_seq_rm(self.memory, seq, p0, p1):
            raise TokenzipError(f"llama.cpp refused to remove positions [{p0}, {p1}) (a recurrent model?)")

    def remove_positions(self, positions: Iterable[int], seq: int = SEQ) -> None:
        """Remove every position in ``positions``, consecutive ones in one call."""
        for p0, p1 in runs(sorted(set(positions))):
            self.remove(p0, p1, seq)

    def clear(self) -> None:
        llama().llama_memory_clear(self.memory, True)

    def pos_min(self, seq: int = SEQ) -> int:
        return int(llama().llama_memory_seq_pos_min(self.memory, seq))

    def pos_max(self, seq: int = SEQ) -> int:
        return int(llama().llama_memory_seq_pos_max(self.memory, seq))

    def holds(self, position: int, seq: int = SEQ) -> bool:
        """Whether the cache holds ``position`` of ``seq``, asked of llama.cpp: the cell is copied to the scratch
        sequence (the cells are shared, no data moves) and its positions queried. Models with sliding-window layers
        answer for their sliding-window cache (the positions of the last window)."""
        lib = llama()
        lib.llama_memory_seq_rm(self.memory, PROBE, -1, -1)
        lib.llama_memory_seq_cp(self.memory, seq, PROBE, position, position + 1)
        found = self.pos_min(PROBE) == position == self.pos_max(PROBE)
        lib.llama_memory_seq_rm(self.memory, PROBE, -1, -1)
        return found

    def held_positions(self, upto: int, seq: int = SEQ) -> list[int]:
        """The positions below ``upto`` that the cache holds for ``seq`` (see :meth:`holds`)."""
        return [p for p in range(upto) if self.holds(p, seq)]

    def save(self, seq: int = SEQ) -> bytes:
        """The cache of ``seq`` (every layer's cells, with their positions), as llama.cpp serialises it."""
        lib = llama()
        size = lib.llama_state_seq_get_size(self.handle, seq)
        buf = (ctypes.c_uint8 * size)()
        written = lib.llama_state_seq_get_data(self.handle, buf, size, seq)
        return ctypes.string_at(buf, written)  # one copy (slicing a ctypes array builds a list of ints first)

    def load(self, data: bytes, seq: int = SEQ) -> None:
        """Replace the cache of ``seq`` by ``data`` from :meth:`save` (of a context of the same model)."""
        lib = llama()
        self.remove(-1, -1, seq)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if lib.llama_state_seq_set_data(self.handle, buf, len(data), seq) == 0:
            raise TokenzipError(f"llama.cpp could not restore a saved context of {len(data)} bytes into a context of "
                                f"{self.n_ctx} cells (too small, or saved from another model)")

    def close(self) -> None:
        if getattr(self, "handle", None):
            llama().llama_batch_free(self.batch)
            llama().llama_free(self.handle)
            self.handle = None


def runs(positions: list[int]) -> list[tuple[int, int]]:
    """Sorted positions as half-open runs of consecutive ones: ``[1, 2, 3, 7] -> [(1, 4), (7, 8)]``."""
    out: list[tuple[int, int]] = []
    for p in positions:
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out
