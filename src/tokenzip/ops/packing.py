"""Ragged storage of kept cache entries: each (batch row, KV head) holds only its own entries, with no padding.

A head-adaptive selection (Ada-KV, Feng et al., 2024, arXiv 2407.11550; KVzip's one top-k over all layers and
heads, Kim et al., 2025, arXiv 2505.23416) keeps a different number of entries per head, and a batch keeps a
different number per row. As a rectangle ``(B, H, K, D)`` it is padded to the largest count ``K``; packed, it is
one flat ``(T, D)`` tensor, ``T`` the number of entries really kept, ordered by row, then head, then position,
with ``lengths`` ``(B, H)`` saying how many belong to each (row, head).

Attention needs a rectangle: :func:`unpack` lays the entries out right-aligned in a ``(B, H, W, D)`` view, zeros
on the left (to be masked invalid), built per call and freed after it.

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


def pack(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid entries of ``x`` ``(B, H, K, D)`` (``valid`` ``(B, 1 or H, K)``) as one flat ``(T, D)`` tensor,
    row by row, head by head, in slot order; and ``lengths`` ``(B, H)``, the entries of each (row, head)."""
    valid = valid.to(x.device).expand(*x.shape[:3])
    return x[valid], valid.sum(-1)


def right_aligned(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, H, width)`` bool: the last ``lengths[b, h]`` slots of each (row, head)."""
    slots = torch.arange(width, device=lengths.device)
    return slots[None, None, :] >= (width - lengths)[..., None]


def segments(flat: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Each (row, head)'s entries of a packed tensor, row by row, head by head: views, no copy."""
    return list(flat.split(lengths.flatten().tolist()))


def unpack(flat: torch.Tensor, lengths: torch.Tensor, width: int | None = None,
           after: tuple[torch.Tensor, ...] = (), pieces: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The packed entries as a ``(B, H, width, D)`` rectangle, each (row, head)'s right-aligned (its last slots),
    zeros before them, followed by the ``after`` tensors ``(B, H, n, D)`` (entries every head holds). ``width``
    defaults to the largest length; ``pieces`` are :func:`segments` of ``flat``, when already at hand.

    One concatenation of the pieces in their final order (a boolean-mask scatter of the same entries, or a copy per
    piece, took 1.5-3x longer in a CPU micro-benchmark)."""
    b, h = lengths.shape
    d = flat.shape[-1]
    pieces = segments(flat, lengths) if pieces is None else pieces
    width = max((p.shape[0] for p in pieces), default=0) if width is None else width
    zero = flat.new_zeros(1, d)
    rows_after = [t.reshape(b * h, t.shape[-2], d).unbind(0) for t in after]
    parts = []
    for i, piece in enumerate(pieces):
        if piece.shape[0] < width:
            parts.append(zero.expand(width - piece.shape[0], d))
        parts.append(piece)
        parts.extend(rows[i] for rows in rows_after)
    return torch.cat(parts).view(b, h, -1, d)


def keep_newest(flat: torch.Tensor, lengths: torch.Tensor, most: torch.Tensor | int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (row, head) keeps its last ``min(length, most)`` entries (``most`` an int or ``(B, H)``)."""
    kept = lengths.clamp(max=most) if isinstance(most, int) else torch.minimum(lengths, most.clamp_min(0))
    if bool((kept == lengths).all()):
        return flat, lengths
    starts = lengths.flatten().cumsum(0) - lengths.flatten()  # first flat index of each (row, head)
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths.flatten())
    index_in_head = torch.arange(flat.shape[0], device=flat.device) - starts[owner]
    drop = (lengths - kept).flatten()[owner]
    return flat[index_in_head >= drop], kept
