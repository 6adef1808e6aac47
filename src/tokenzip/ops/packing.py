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


def unpack(flat: torch.Tensor, lengths: torch.Tensor, width: int | None = None,
           after: tuple[torch.Tensor, ...] = (), counts: list[int] | None = None) -> torch.Tensor:
    """The packed entries as a ``(B, H, width, D)`` rectangle, each (row, head)'s right-aligned (its last slots),
    zeros before them, followed by the ``after`` tensors ``(B, H, n, D)`` (entries every head holds), in one
    allocation. ``width`` defaults to the largest length; ``counts`` is ``lengths`` as a list, when known.

    One contiguous copy per (row, head): a boolean-mask scatter of the same entries took about 5x longer on CPU."""
    b, h = lengths.shape
    counts = lengths.flatten().tolist() if counts is None else counts
    width = max(counts, default=0) if width is None else width
    extra = sum(t.shape[-2] for t in after)
    out = flat.new_empty(b, h, width + extra, flat.shape[-1])
    rows = out.view(b * h, width + extra, flat.shape[-1])
    start = 0
    for i, n in enumerate(counts):
        if n < width:
            rows[i, : width - n].zero_()
        rows[i, width - n : width].copy_(flat[start : start + n])
        start += n
    for t in after:
        out[:, :, width : width + t.shape[-2]] = t
        width += t.shape[-2]
    return out


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
