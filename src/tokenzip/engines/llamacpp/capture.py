"""Queries, keys and values read out of llama.cpp's graph while a pass runs (the context's ``cb_eval``).

llama.cpp names each layer's attention inputs ``Qcur-<layer>``, ``Kcur-<layer>`` and ``Vcur-<layer>``; the query and
key tensors tokenzip reads are the outputs of the rotary embedding (op ``ROPE``: post-RoPE, as llama.cpp caches the
keys), the values the per-head view (op ``RESHAPE``). They arrive one micro-batch at a time, ``(D, H, n)`` float32 in
ggml's layout, and are kept as ``(1, H, N, D)`` tensors, in tokenzip's rotate-half layout (see
:meth:`Layout.from_engine`). Asking only for these nodes keeps the pass as fast as one without a callback.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenzip.engines.llamacpp.layout import Layout
from tokenzip.engines.llamacpp.lib import llama
from tokenzip.errors import TokenzipError

TENSORS = {b"Qcur": ("queries", b"ROPE"), b"Kcur": ("keys", b"ROPE"), b"Vcur": ("values", b"RESHAPE")}
GGML_TYPE_F32 = 0


class _Head(ctypes.Structure):
    """The first fields of ``struct ggml_tensor`` (ggml.h): its type and shape."""

    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4)]


@functools.cache
def ggml() -> Any:
    """ggml's base library, as loaded by llama-cpp-python, with the few functions read here."""
    lib = ctypes.CDLL(str(Path(llama().__file__).parent / "lib" / "libggml-base.so"))
    for name, restype, argtypes in (
        ("ggml_get_name", ctypes.c_char_p, [ctypes.c_void_p]),
        ("ggml_op_desc", ctypes.c_char_p, [ctypes.c_void_p]),
        ("ggml_nbytes", ctypes.c_size_t, [ctypes.c_void_p]),
        ("ggml_is_contiguous", ctypes.c_bool, [ctypes.c_void_p]),
        ("ggml_backend_tensor_get", None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class TensorReader:
    """The ``cb_eval`` of an engine's context: while :meth:`reading` is active, keeps the post-RoPE queries (the last
    ``window`` of the pass), keys and values of the chosen layers."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.layers: set[int] = set()
        self.window = 0
        self.got: dict[str, dict[int, list[torch.Tensor]]] = {}
        self.error: BaseException | None = None  # raised in the callback (ctypes would swallow it), re-raised after

    @contextmanager
    def reading(self, layers: list[int], window: int) -> Iterator[dict[str, dict[int, torch.Tensor]]]:
        """Inside the block, every pass keeps what it computes for ``layers`` (queries: the last ``window`` tokens);
        the dict yielded is filled on exit: ``{"queries"|"keys"|"values": {layer: (1, H, N, D)}}``."""
        self.layers, self.window = set(layers), window
        self.got = {"queries": {}, "keys": {}, "values": {}}
        self.error = None
        out: dict[str, dict[int, torch.Tensor]] = {}
        try:
            yield out
        finally:
            got, self.layers, self.got = self.got, set(), {}
        if self.error is not None:
            raise self.error
        for name, by_layer in got.items():
            out[name] = {i: torch.cat(parts, dim=2) for i, parts in by_layer.items()}
        missing = [i for i in layers if i not in out["keys"] or i not in out["values"]]
        if missing:
            raise TokenzipError(f"llama.cpp's graph named no Kcur/Vcur tensors for layers {missing}: this llama.cpp "
                                "build names its tensors differently from the ones tokenzip reads")

    def __call__(self, tensor: int, ask: bool) -> bool:
        if not self.layers or self.error is not None:
            return False
        try:
            return self._on_tensor(tensor, ask)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller of the pass
            self.error = exc
            return False

    def _on_tensor(self, tensor: int, ask: bool) -> bool:
        name = ggml().ggml_get_name(tensor) or b""
        base, _, layer = name.partition(b"-")
        wanted = TENSORS.get(base)
        if wanted is None or not layer.isdigit() or int(layer) not in self.layers:
            return False
        field, op = wanted
        if ggml().ggml_op_desc(tensor) != op:
            return False
        if field == "queries" and self.window == 0:
            return False
        if ask:
            return True
        self._keep(field, int(layer), tensor)
        return True

    def _keep(self, field: str, layer: int, tensor: int) -> None:
        head = _Head.from_address(tensor)
        if head.type != GGML_TYPE_F32 or not ggml().ggml_is_contiguous(tensor):
            raise TokenzipError(f"llama.cpp's {field} of layer {layer} are not contiguous float32; tokenzip cannot "
                                "read them")
        d, h, n = head.ne[0], head.ne[1], head.ne[2]
        data = np.empty((n, h, d), dtype=np.float32)
        ggml().ggml_backend_tensor_get(tensor, data.ctypes.data, 0, data.nbytes)
        if field != "values" and self.layout.interleaved:  # numpy here: torch's threads would spin inside a callback
            data = np.concatenate([data[..., 0::2], data[..., 1::2]], axis=-1)
        x = torch.from_numpy(np.ascontiguousarray(data.transpose(1, 0, 2)))[None]  # (1, H, n, D)
        parts = self.got[field].setdefault(layer, [])
        parts.append(x)
        if field == "queries" and sum(p.shape[2] for p in parts) > self.window:
            parts[:] = [torch.cat(parts, dim=2)[:, :, -self.window :]]
