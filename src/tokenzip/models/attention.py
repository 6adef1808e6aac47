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
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

ATTN_NAME = "tokenzip_sdpa"

# handler(module, query, key, value, attention_mask, kwargs) -> attention_mask
Handler = Callable[[Any, torch.Tensor, torch.Tensor, torch.Tensor, Any, dict], Any]

_HANDLERS: dict[Any, list[Handler]] = {}
_ACTIVE: dict[int, tuple[int, Any]] = {}  # id(model) -> (depth, original implementation)


def _attention(module, query, key, value, attention_mask, **kwargs):
    for handler in _HANDLERS.get(module, ()):
        attention_mask = handler(module, query, key, value, attention_mask, kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(ATTN_NAME, _attention)
# The masks transformers builds are sized by the cache layers (tokenzip's compressed layers report the
# entries they hold); per-row / per-head validity of those entries is added by CacheMasks in the handlers.
AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
assert ATTN_NAME in ALL_MASK_ATTENTION_FUNCTIONS


@contextlib.contextmanager
def route_attention(model: Any, handlers: dict[Any, Handler]) -> Iterator[None]:
    """Run ``model`` with tokenzip's attention and ``handlers`` (attention module -> handler) inside the block.

    Nested blocks on the same model compose; the original implementation is restored when the
    outermost block exits, also on error. Attention runs through SDPA while routed.
    """
    key = id(model)
    depth, original = _ACTIVE.get(key, (0, model.config._attn_implementation))
    if depth == 0:
        model.set_attn_implementation(ATTN_NAME)
    _ACTIVE[key] = (depth + 1, original)
    for module, handler in handlers.items():
        _HANDLERS.setdefault(module, []).append(handler)
    try:
        yield
    finally:
        for module, handler in handlers.items():
            remaining = [h for h in _HANDLERS.get(module, []) if h is not handler]
            if remaining:
                _HANDLERS[module] = remaining
            else:
                _HANDLERS.pop(module, None)
        depth, original = _ACTIVE[key]
        if depth == 1:
            del _ACTIVE[key]
            model.set_attn_implementation(original)
        else:
            _ACTIVE[key] = (depth - 1, original)


class CacheMasks:
    """Validity of each managed layer's stored cache entries, and the masks built from it.

    ``valid[layer]`` is ``None`` (every stored entry valid) or a bool tensor ``(B, H, S)`` with
    ``H`` 1 or the number of KV heads, right-aligned with the layer's stored entries: when a
    sliding-window layer drops its oldest entries, the leftmost columns simply fall away.
    """

    def __init__(self) -> None:
        self.valid: dict[int, torch.Tensor | None] = {}

    def manage(self, layer_idx: int, valid: torch.Tensor | None) -> None:
        """Take over the mask of ``layer_idx`` from now on; ``valid`` describes its stored entries."""
        self.valid[layer_idx] = None if valid is None or bool(valid.all()) else valid

    def managed(self, layer_idx: int) -> bool:
        return layer_idx in self.valid

    def snapshot(self) -> dict[int, torch.Tensor | None]:
        return dict(self.valid)

    def restore(self, snapshot: dict[int, torch.Tensor | None]) -> None:
        self.valid = dict(snapshot)

    def mask_for(self, layer_idx: int, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor | None:
        """The boolean SDPA mask for a managed layer, and the validity update for the new tokens.

        ``key`` holds the stored entries followed by the ``q`` new ones (what the cache's ``update``
        returned). Stored entries are visible when valid; new tokens see each other causally.
        """
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
