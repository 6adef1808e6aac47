"""Which stored cache entries each reduced layer holds, and the attention masks built from them.

Once a cache is compressed (or a layers method pruned tokens inside the model), layers hold different numbers of
entries and some entries are invalid for some rows or heads; the one mask per layer type transformers builds no
longer fits. :class:`CacheMasks` tracks each managed layer's validity, right-aligned with its stored entries, and
builds its mask as ``[valid stored entries | causal among the new tokens]``. Every stage attached to a model
shares one (:attr:`tokenzip.models.attachment.Attachment.masks`).
"""

from __future__ import annotations

from typing import Any

import torch


class CacheMasks:
    """Validity of each managed layer's stored cache entries, and the masks built from it.

    ``valid[layer]`` is ``None`` (every stored entry valid) or a bool tensor ``(B, H, S)`` with
    ``H`` 1 or the number of KV heads, right-aligned with the layer's stored entries: when a
    sliding-window layer drops its oldest entries, the leftmost columns simply fall away. For a
    :class:`tokenzip.models.cache_layers.PackedLayer` the stored entries are the padded view it builds for
    attention (each head's entries last), and ``valid`` is that view's validity (one bool per slot: the
    mask's share of what is held, 1 byte per slot and head against ``2 x head_dim`` elements per entry).
    ``positions[layer]`` ``(B, S)`` (sliding-window layers whose tokens were pruned inside the model)
    holds each stored entry's input position, so that the window is measured on positions, not slots.

    Several stages may ask for the same layer's mask in one attention call: :meth:`mask_for` computes
    it once per call (the validity grows by the new tokens once).
    """

    def __init__(self) -> None:
        self.valid: dict[int, torch.Tensor | None] = {}
        self.positions: dict[int, torch.Tensor] = {}
        self.windows: dict[int, int] = {}
        self._last: dict[int, tuple[torch.Tensor, Any]] = {}

    def clear(self) -> None:
        """Forget every layer (a new prefill starts)."""
        self.valid.clear()
        self.positions.clear()
        self.windows.clear()
        self._last.clear()

    def manage(self, layer_idx: int, valid: torch.Tensor | None, positions: torch.Tensor | None = None,
               window: int | None = None) -> None:
        """Take over the mask of ``layer_idx`` from now on; ``valid`` describes its stored entries, and
        ``positions``/``window`` their input positions on a sliding-window layer (else no window is applied)."""
        self.valid[layer_idx] = None if valid is None or bool(valid.all()) else valid
        self.positions.pop(layer_idx, None)
        self.windows.pop(layer_idx, None)
        if positions is not None and window is not None:
            self.positions[layer_idx], self.windows[layer_idx] = positions, window
        self._last.pop(layer_idx, None)

    def managed(self, layer_idx: int) -> bool:
        return layer_idx in self.valid

    def drop_new(self, layer_idx: int, keep: torch.Tensor, length: int) -> None:
        """The last ``q`` of the ``length`` entries a managed layer holds stay valid only where ``keep`` ``(B, q)`` is
        True (a later chunk's padding tokens, once :meth:`mask_for` grew the validity by the chunk)."""
        q = keep.shape[-1]
        valid = self.valid.get(layer_idx)
        valid = keep.new_ones(keep.shape[0], 1, length) if valid is None else valid
        self.valid[layer_idx] = torch.cat([valid[..., :-q], valid[..., -q:] & keep[:, None, :]], dim=-1)

    def snapshot(self) -> tuple[dict, dict, dict]:
        return dict(self.valid), dict(self.positions), dict(self.windows)

    def restore(self, snapshot: tuple[dict, dict, dict]) -> None:
        valid, positions, windows = snapshot
        self.valid, self.positions, self.windows = dict(valid), dict(positions), dict(windows)
        self._last.clear()

    def mask_for(self, layer_idx: int, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
        """The boolean SDPA mask for a managed layer, and the validity update for the new tokens.

        ``key`` holds the stored entries followed by the ``q`` new ones (what the cache's ``update``
        returned). Stored entries are visible when valid (and, on a windowed layer, within the window
        of input positions); new tokens see each other causally.
        """
        last = self._last.get(layer_idx)
        if last is not None and last[0] is query:
            return last[1]
        mask = self._build(layer_idx, query, key)
        if layer_idx in self.positions:
            mask = self._within_window(layer_idx, mask, query, key)
        self._last[layer_idx] = (query, mask)
        return mask

    def _build(self, layer_idx: int, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
        batch, n_heads, q = query.shape[0], query.shape[1], query.shape[2]
        stored = key.shape[2] - q
        valid = self.valid[layer_idx]
        if valid is not None:
            valid = valid[..., -stored:] if stored > 0 else valid[..., :0]
            if valid.shape[-1] < stored:  # entries added outside a managed forward: valid by definition
                pad = valid.new_ones(*valid.shape[:-1], stored - valid.shape[-1])
                valid = torch.cat([pad, valid], dim=-1)
            self.valid[layer_idx] = torch.cat([valid, valid.new_ones(*valid.shape[:-1], q)], dim=-1)
        if valid is None and q == 1:
            return None
        device = query.device
        causal = torch.ones(q, q, dtype=torch.bool, device=device).tril()
        if valid is None:
            old = torch.ones(1, 1, q, stored, dtype=torch.bool, device=device)
            return torch.cat([old, causal.view(1, 1, q, q)], dim=-1).expand(batch, 1, q, stored + q)
        heads = valid.shape[1]
        old = valid[:, :, None, :].expand(batch, heads, q, stored)
        mask = torch.cat([old, causal.view(1, 1, q, q).expand(batch, heads, q, q)], dim=-1)
        if heads > 1 and heads != n_heads:  # per KV head -> per query head (GQA groups)
            mask = mask.repeat_interleave(n_heads // heads, dim=1)
        return mask

    def _within_window(self, layer_idx: int, mask: torch.Tensor | None, query: torch.Tensor,
                       key: torch.Tensor) -> torch.Tensor | None:
        """Restrict the mask to keys within ``window`` input positions of each new token.

        After pruning, a sliding layer's last ``window - 1`` entries can span more than ``window``
        positions. New tokens take the positions after the newest stored one.
        """
        b, q, k = query.shape[0], query.shape[2], key.shape[2]
        stored = self.positions[layer_idx].to(key.device)
        new = int(stored.max()) + 1 + torch.arange(q, device=key.device) if stored.numel() else \
            torch.arange(q, device=key.device)
        positions = torch.cat([stored, new[None].expand(b, -1)], dim=1)[:, -k:]
        self.positions[layer_idx] = positions
        if positions.shape[1] < k:  # cannot happen with a consistent cache; keep the mask as it is
            return mask
        inside = ((new[None, :, None] - positions[:, None, :]) < self.windows[layer_idx])[:, None]  # (B, 1, q, k)
        return inside if mask is None else mask & inside
