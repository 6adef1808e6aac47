"""Which of a layer's original cache entries a compressed layer still holds, unchanged.

An eviction method keeps some of the original key vectors as they were (gathered, bit for bit); a merging or
quantizing one stores new vectors. Matching the stored keys against the originals by their exact bits tells,
for every original entry and KV head, whether it was kept, without asking the method: what the page's kv heat
map shows. Entries are compared through a 64-bit hash of their bits (a collision between two different
vectors is as likely as a random 64-bit match).

Pure tensor functions: no model code.
"""

from __future__ import annotations

import torch


def _row_hashes(x: torch.Tensor) -> torch.Tensor:
    """One int64 per vector of ``x`` ``(..., D)``, from the exact bits of its float32 values."""
    bits = x.float().contiguous().view(torch.int32).long()
    weights = torch.randint(1, 1 << 62, (x.shape[-1],), generator=torch.Generator().manual_seed(0x7A1C)).to(x.device)
    return (bits * weights).sum(-1)  # int64 arithmetic wraps: a hash


def kept_entries(original: torch.Tensor, stored: torch.Tensor, valid: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``original`` ``(H, N, D)`` and ``stored`` ``(H, M, D)`` keys of one layer (one batch row), ``valid`` ``(H or 1,
    M)`` (None: all stored entries valid). Returns ``kept`` ``(H, N)`` (original entry found among the valid stored
    ones) and ``matched`` ``(H,)`` (how many valid stored entries are originals: fewer than the valid count when
    the method stored new vectors)."""
    h, m = stored.shape[0], stored.shape[1]
    valid = torch.ones(h, m, dtype=torch.bool, device=stored.device) if valid is None else valid.expand(h, m)
    orig, held = _row_hashes(original), _row_hashes(stored)
    kept = torch.stack([torch.isin(orig[i], held[i][valid[i]]) for i in range(h)])
    matched = torch.stack([torch.isin(held[i][valid[i]], orig[i]).sum() for i in range(h)])
    return kept, matched
