"""tokenzip's attention implementation: SDPA plus per-layer hooks, registered the supported way.

transformers builds one attention mask per layer *type* (sized on the first layer of that type) and
hands it to the attention function. Once a cache is compressed, layers hold different numbers of
entries, some entries are invalid (padding, or dropped for one head but not another), and that
single mask no longer fits. Instead of patching transformers, tokenzip registers an attention
implementation (``transformers.AttentionInterface``) and a matching mask function
(``AttentionMaskInterface``) under the name ``"tokenzip_sdpa"``; a model is switched to it for the
duration of a ``with`` block and switched back on exit. The function runs ``handlers`` registered
for the attention module (to capture queries, or to rebuild the mask for a managed layer), then
PyTorch SDPA.

``CacheMasks`` is the shared mask logic for layers whose cache was reduced: it tracks which stored
entries are valid (per batch row and KV head), right-aligned with the cache, and builds each layer's
mask as ``[valid stored entries | causal among the new tokens]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

ATTN_NAME = "tokenzip_sdpa"

# handler(module, query, key, value, attention_mask, kwargs) -> attention_mask
Handler = Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, Any, dict], Any]

_HANDLERS: dict[Any, list[Handler]] = {}


def _attention(module, query, key, value, attention_mask, **kwargs):
    for handler in _HANDLERS.get(module, ()):
        attention_mask = handler(module, query, key, value, attention_mask, kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTN_NAME, _attention)
# The masks transformers builds are sized by the cache layers (tokenzip's compressed layers report the
# entries they hold); per-row / per-head validity of those entries is added by CacheMasks in the handlers.
AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
assert ATTN_NAME in ALL_MASK_ATTENTION_FUNCTIONS


@dataclass
class _Route:
    depth: int
    original: str
    masks: CacheMasks


_ACTIVE: dict[int, _Route] = {}  # id(model) -> its routing while inside at least one block


@contextlib.contextmanager
def route_attention(model: Any, handlers: dict[Any, Handler], masks: CacheMasks | None = None
                    ) -> Iterator[CacheMasks]:
    """Run ``model`` with tokenzip's attention and ``handlers`` (attention module -> handler) inside the block.

    Yields the :class:`CacheMasks` every stage attached to this model shares (one validity state per
    model, so a layers method and a kv method agree on which entries each layer holds). ``masks``
    makes that state the given one for the block (a compressed cache being served brings its own).
    Nested blocks on the same model compose; the original implementation is restored when the
    outermost block exits, also on error. Attention runs through SDPA while routed.
    """
    key = id(model)
    route = _ACTIVE.get(key)
    outer_masks = route.masks if route else None
    if route is None:
        route = _ACTIVE[key] = _Route(0, model.config._attn_implementation, masks or CacheMasks())
        model.set_attn_implementation(ATTN_NAME)
    elif masks is not None:
        route.masks = masks
    route.depth += 1
    for module, handler in handlers.items():
        _HANDLERS.setdefault(module, []).append(handler)
    try:
        yield route.masks
    finally:
        for module, handler in handlers.items():
            remaining = [h for h in _HANDLERS.get(module, []) if h is not handler]
            if remaining:
                _HANDLERS[module] = remaining
            else:
                _HANDLERS.pop(module, None)
        route.depth -= 1
        if outer_masks is not None:
            route.masks = outer_masks
        if route.depth == 0:
            del _ACTIVE[key]
            model.set_attn_implementation(route.original)


def shared_masks(model: Any) -> CacheMasks | None:
    """The validity state the stages attached to ``model`` share, while it is routed (else None)."""
    route = _ACTIVE.get(id(model))
    return route.masks if route else None


def is_routed(model: Any) -> bool:
    """Whether some tokenzip stage is attached to ``model``."""
    return id(model) in _ACTIVE


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
