"""Rows decoding together, one token each per step, their entries kept stacked between steps.

:func:`~tokenzip.models.rows.forward_rows` serves any mix of rows and new-token counts, but it stacks every
row's entries again at every call, after each row's own cache layer has copied itself to append one token:
two copies of every row's whole cache per decoded token. A :class:`DecodeBatch` is for the steps in between,
when every row adds exactly one token: the rows' entries are copied once into one buffer per layer
(``(B, H_kv, capacity, D)``, each row right-aligned at the buffer's current end), and each step writes one
column. The attention of row ``r`` sees the last ``lengths[r]`` columns, masked by the row's own
:class:`~tokenzip.models.attachment.CacheMasks` on the layers the kv stage manages, and, on sliding-window
layers, limited to the last ``window`` entries (what a sliding layer keeps when it runs alone).

A row's entries live in the buffer while it decodes here: its own cache is left as it was when it joined
(rows leave a decode batch when their sequence ends). Rows that join later (their prompt fed through
``forward_rows``) bring their own caches; the rows already decoding keep theirs from the buffer. Entries a
quantized layer held are stacked dequantized, and the tokens decoded here stay in full precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import CacheLayerMixin

from tokenzip.models.cache_layers import layer_at, layer_entries, sliding_window_of
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.models.rows import Row, causal, left_padded, right_aligned, run_layers

_HEADROOM = 64  # columns allocated ahead, so that most steps write in place


class _Buffer(CacheLayerMixin):
    """One decoder layer's entries for the rows of a decode batch, right-aligned at ``width``."""

    is_compileable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, lengths: list[int], window: int | None) -> None:
        super().__init__()
        b, h, w, d = keys.shape
        self.keys, self.values = keys.new_empty(b, h, w + _HEADROOM, d), values.new_empty(b, h, w + _HEADROOM, d)
        self.keys[:, :, :w], self.values[:, :, :w] = keys, values
        self.width, self.lengths, self.window = w, list(lengths), window
        self.is_sliding = window is not None
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def entries(self, r: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row ``r``'s entries, ``(1, H, lengths[r], D)`` each."""
        start = self.width - self.lengths[r]
        return self.keys[r : r + 1, :, start : self.width], self.values[r : r + 1, :, start : self.width]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if key_states.shape[-2] != 1:
            raise ValueError("a decode batch takes one new token per row and step (feed prompts with forward_rows)")
        if self.width == self.keys.shape[2]:  # full: grow, one copy
            self.keys = torch.cat([self.keys, torch.empty_like(self.keys[:, :, :_HEADROOM])], dim=2)
            self.values = torch.cat([self.values, torch.empty_like(self.values[:, :, :_HEADROOM])], dim=2)
        self.keys[:, :, self.width] = key_states[:, :, 0]
        self.values[:, :, self.width] = value_states[:, :, 0]
        self.width += 1
        self.lengths = [n + 1 for n in self.lengths]
        start = self.width - max(self.lengths)
        return self.keys[:, :, start : self.width], self.values[:, :, start : self.width]

    def get_seq_length(self) -> int:
        return max(self.lengths)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return max(self.lengths) + query_length, 0

    def get_max_length(self) -> int:
        return -1


class _BufferAttention:
    """Each layer's mask for a decode step: every row's own validity over its own entries."""

    def __init__(self, batch: DecodeBatch) -> None:
        self.batch = batch

    def __call__(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any,
                 kwargs: dict) -> torch.Tensor | None:
        i = module.layer_idx
        layer = self.batch.layers[i]
        width = key.shape[2]
        parts: list[torch.Tensor | None] = []
        for r, (row, length) in enumerate(zip(self.batch.rows, layer.lengths)):
            part = row.masks.mask_for(i, query[r : r + 1], key[r : r + 1, :, width - length :]) \
                if row.masks.managed(i) else None
            recent = causal(1, length, layer.window, query.device)  # a sliding layer keeps its last `window`
            if recent is not None:
                part = recent if part is None else part & recent
            parts.append(part)
        if len(parts) == 1 and parts[0] is None:
            return None  # one row, every entry visible
        return right_aligned(parts, [1] * len(parts), layer.lengths, query.shape[1], 1, width, query.device)


class DecodeBatch:
    """Rows that decode one token each per step, stacked once (see the module docstring)."""

    def __init__(self, model: Any) -> None:
        self.model, self.adapter = model, DecoderAdapter(model)
        self.rows: list[Row] = []
        self.layers: list[_Buffer] = []

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Make ``rows`` the batch, in this order: rows already in it keep their entries, new rows bring their own
        caches, rows left out are dropped. Nothing is copied when the rows are the same."""
        if [id(r) for r in rows] == [id(r) for r in self.rows]:
            return
        if not rows:
            self.rows, self.layers = [], []
            return
        old = {id(r): k for k, r in enumerate(self.rows)}
        layers = []
        for i in range(self.adapter.num_layers):
            keys, values = [], []
            for row in rows:
                k, v = self.layers[i].entries(old[id(row)]) if id(row) in old else layer_entries(layer_at(row.cache, i))
                if k is None:
                    raise ValueError("a row joins a decode batch after its prompt was fed (forward_rows)")
                keys.append(k)
                values.append(v)
            width = max(k.shape[-2] for k in keys)
            window = sliding_window_of(layer_at(rows[0].cache, i))
            layers.append(_Buffer(left_padded(keys, width), left_padded(values, width), [k.shape[-2] for k in keys],
                                  window))
        self.rows, self.layers = list(rows), layers

    @torch.no_grad()
    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """Feed ``tokens[r]`` to row ``r``; the logits of the next token of every row, ``(B, vocab)``."""
        if len(tokens) != len(self.rows) or not self.rows:
            raise ValueError("step needs one token per row of the batch")
        device = next(self.model.parameters()).device
        ids = torch.tensor([[t] for t in tokens], device=device)
        positions = torch.tensor([[row.position] for row in self.rows], device=device)
        logits = run_layers(self.model, self.adapter, ids, positions, list(self.layers), _BufferAttention(self))
        for row in self.rows:
            row.position += 1
        return logits
