"""Several sequences run through a decoder together, each with its own cache: the batch a server forms from
requests that arrive together (iteration-level batching, as in Orca, Yu et al., OSDI 2022, and vLLM).

A :class:`Row` is one sequence: its own transformers cache (dense, or compressed by the kv stage, of any
length) and its own :class:`~tokenzip.models.attachment.CacheMasks` (which stored entries are valid, per
KV head: the per-row validity that padded batches already use). :func:`forward_rows` runs one forward pass
over several rows, each feeding its own number of new tokens (a whole prompt, a question after a cached
context, or one decoded token):

* the new tokens are left-padded to the longest row, with each row's own position ids;
* in every layer, each row's own cache layer takes only that row's real new tokens (so a row's cache is
  updated exactly as if it ran alone: sliding windows, quantized layers and all);
* attention sees each row's entries left-padded to the longest row, masked by that row's own validity:
  ``[valid stored entries | causal among its new tokens]``, windowed on sliding-window layers.

Rows never see each other's entries. The model is routed through tokenzip's attention for the call
(:func:`~tokenzip.models.attachment.route_attention`), which builds each layer's mask from the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from tokenzip.models.attachment import CacheMasks, route_attention
from tokenzip.models.cache_layers import copy_cache, layer_at, sliding_window_of
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.models.decoders import DecoderAdapter


@dataclass
class Row:
    """One sequence: its cache, the validity of its managed layers, and the position of its next token."""

    cache: Any
    masks: CacheMasks = field(default_factory=CacheMasks)
    position: int = 0

    @classmethod
    def empty(cls, model: Any) -> Row:
        """A row with an empty cache: its first tokens are a whole prompt."""
        return cls(new_cache(model))

    @classmethod
    def after(cls, cache: Any, masks: CacheMasks, seen: int) -> Row:
        """A row that continues a (compressed) cache of ``seen`` original tokens; the cache and masks given are
        left untouched (the row works on a shallow copy: cache updates build new tensors)."""
        own = CacheMasks()
        own.restore(masks.snapshot())
        return cls(copy_cache(cache), own, seen)

    def fork(self) -> Row:
        """An independent copy of this row (``n`` choices sampled after one shared prompt)."""
        return Row.after(self.cache, self.masks, self.position)


class _RowsLayer(CacheLayerMixin):
    """One decoder layer's cache for one forward over rows: each row's own layer takes its row's new tokens; the
    entries returned to attention are the rows' own, left-padded to the longest."""

    is_compileable = False

    def __init__(self, layers: list[Any], new_tokens: list[int]) -> None:
        super().__init__()
        self.layers, self.new_tokens = layers, new_tokens
        self.lengths: list[int] = []  # each row's key length in the last update
        self.is_sliding = bool(getattr(layers[0], "is_sliding", False))
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        q = key_states.shape[-2]
        keys, values = [], []
        for r, (layer, n) in enumerate(zip(self.layers, self.new_tokens)):
            k, v = layer.update(key_states[r : r + 1, :, q - n :], value_states[r : r + 1, :, q - n :], *args, **kwargs)
            keys.append(k)
            values.append(v)
        self.lengths = [k.shape[-2] for k in keys]
        width = max(self.lengths)
        return left_padded(keys, width), left_padded(values, width)

    def get_seq_length(self) -> int:
        return max(layer.get_seq_length() for layer in self.layers)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return max(layer.get_mask_sizes(query_length)[0] for layer in self.layers), 0

    def get_max_length(self) -> int:
        return -1


def left_padded(tensors: list[torch.Tensor], width: int) -> torch.Tensor:
    """``(1, H, S_r, D)`` tensors stacked into ``(B, H, width, D)``, zeros on the left (one copy of each)."""
    if len(tensors) == 1:
        return tensors[0]
    first = tensors[0]
    out = first.new_empty(len(tensors), first.shape[1], width, first.shape[3])
    for r, t in enumerate(tensors):
        pad = width - t.shape[-2]
        out[r, :, :pad] = 0  # masked, but kept finite
        out[r, :, pad:] = t[0]
    return out


def causal(n: int, length: int, window: int | None, device: Any) -> torch.Tensor | None:
    """``(1, 1, n, length)``: ``n`` new tokens after ``length - n`` contiguous stored entries see the stored ones
    and each other causally, within ``window`` positions on a sliding-window layer; None when all are visible."""
    stored = length - n
    if n == 1 and (window is None or length <= window):
        return None
    keys = torch.arange(length, device=device) - stored  # position relative to the first new token
    new = torch.arange(n, device=device)[:, None]
    visible = keys[None, :] <= new
    if window is not None:
        visible &= (new - keys[None, :]) < window
    return visible.view(1, 1, n, length)


class _RowsAttention:
    """The attention handler of one forward over rows: each layer's mask, built row by row."""

    def __init__(self, rows: Sequence[Row], new_tokens: list[int], layers: list[_RowsLayer]) -> None:
        self.rows, self.new_tokens, self.layers = rows, new_tokens, layers

    def __call__(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any,
                 kwargs: dict) -> torch.Tensor:
        i = module.layer_idx
        layer = self.layers[i]
        n_heads, q, width = query.shape[1], query.shape[2], key.shape[2]
        parts: list[torch.Tensor | None] = []
        for r, (row, n, length) in enumerate(zip(self.rows, self.new_tokens, layer.lengths)):
            if row.masks.managed(i):
                part = row.masks.mask_for(i, query[r : r + 1, :, q - n :], key[r : r + 1, :, width - length :])
            else:
                part = causal(n, length, sliding_window_of(layer.layers[r]), query.device)
            parts.append(part)
        return right_aligned(parts, self.new_tokens, layer.lengths, n_heads, q, width, query.device)


def right_aligned(parts: Sequence[torch.Tensor | None], new_tokens: Sequence[int], lengths: Sequence[int],
                  n_heads: int, q: int, width: int, device: Any) -> torch.Tensor:
    """The ``(B, 1 or n_heads, q, width)`` mask of a forward over rows, from each row's own part (``(1, h, n, length)``,
    None: all visible) over its last ``new_tokens[r]`` queries and its last ``lengths[r]`` keys (rows are left-padded);
    padding queries see one entry (their output is discarded)."""
    heads = max((p.shape[1] for p in parts if p is not None), default=1)
    heads = n_heads if heads > 1 else 1
    out = torch.zeros(len(parts), heads, q, width, dtype=torch.bool, device=device)
    for r, (part, n, length) in enumerate(zip(parts, new_tokens, lengths)):
        out[r, :, q - n :, width - length :] = True if part is None else per_head(part[0], heads)
        out[r, :, : q - n, width - 1] = True
    return out


def per_head(mask: torch.Tensor, heads: int) -> torch.Tensor:
    """A ``(h, n, k)`` mask as ``(heads, n, k)`` (per KV head -> per query head, GQA groups)."""
    if mask.shape[0] == heads or mask.shape[0] == 1:
        return mask
    return mask.repeat_interleave(heads // mask.shape[0], dim=0)


@torch.no_grad()
def forward_rows(model: Any, rows: Sequence[Row], tokens: Sequence[Sequence[int]]) -> torch.Tensor:
    """Feed ``tokens[r]`` (at least one id) to ``rows[r]`` for every row in one forward pass; returns the logits of
    each row's last new token, ``(len(rows), vocab)``. Each row's cache and position advance by its tokens."""
    if not rows or len(rows) != len(tokens) or any(len(t) == 0 for t in tokens):
        raise ValueError("forward_rows needs one non-empty token list per row")
    adapter = DecoderAdapter(model)
    device = next(model.parameters()).device
    new_tokens = [len(t) for t in tokens]
    q = max(new_tokens)
    ids = torch.tensor([[t[0]] * (q - len(t)) + list(t) for t in tokens], device=device)
    positions = torch.tensor([[row.position] * (q - n) + list(range(row.position, row.position + n))
                              for row, n in zip(rows, new_tokens)], device=device)
    layers = [_RowsLayer([layer_at(row.cache, i) for row in rows], new_tokens) for i in range(adapter.num_layers)]
    logits = run_layers(model, adapter, ids, positions, layers, _RowsAttention(rows, new_tokens, layers))
    for row, n in zip(rows, new_tokens):
        row.position += n
    return logits


def run_layers(model: Any, adapter: DecoderAdapter, ids: torch.Tensor, positions: torch.Tensor,
               layers: list[CacheLayerMixin], handler: Any) -> torch.Tensor:
    """One forward pass of ``ids`` ``(B, q)`` at ``positions`` over the cache ``layers``, every attention mask built by
    ``handler``; the logits of each row's last token, ``(B, vocab)``."""
    # This 4-d placeholder only keeps transformers from building masks of its own.
    placeholder = torch.ones(ids.shape[0], 1, ids.shape[1], 1, dtype=torch.bool, device=ids.device)
    with route_attention(model, {m: handler for m in adapter.attention_modules}):
        out = model(input_ids=ids, position_ids=positions, attention_mask=placeholder, use_cache=True,
                    logits_to_keep=1, **cache_kwargs(model, Cache(layers=layers)))
    return out.logits[:, -1]
