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
