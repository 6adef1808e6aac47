"""Rotary position embeddings undone, for the scorers that need keys or queries before rotation.

RoPE (Su et al., 2021, arXiv 2104.09864) in the rotate-half convention. Expected attention (Devoto et al., 2025,
arXiv 2510.00636) models pre-RoPE queries; KVzip's self-replay (Kim et al., 2025, arXiv 2505.23416) rotates the
prefill's queries further.

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def unrotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Undo rotary embedding (RoPE, rotate-half convention): ``x_pre = x cos - rotate_half(x) sin``."""
    return x * cos - rotate_half(x) * sin


def rope_cos_sin(positions: torch.Tensor, dims: int, base: float,
                 scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` of RoPE in the rotate-half convention at ``positions`` ``(1, P)``, each ``(1, P, dims)``: pair
    ``(i, i + dims/2)`` turns by ``position * scale * base^(-2i/dims)`` (linear position scaling ``scale``)."""
    inv_freq = base ** (-torch.arange(0, dims, 2, dtype=torch.float64) / dims)
    angles = positions.double()[..., None] * scale * inv_freq
    emb = torch.cat([angles, angles], dim=-1)
    return emb.cos().float(), emb.sin().float()

