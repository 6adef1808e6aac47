"""KV-cache quantization: asymmetric min-max in groups, packed into uint8.

KIVI (Liu et al., 2024, arXiv 2402.02750) quantizes keys per channel and values per token; ZipCache (He et al.,
2024, arXiv 2405.14256) uses the same quantizer at two precisions.

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


def quantize(x: torch.Tensor, bits: int, dim: int, group: int) -> dict[str, torch.Tensor | int]:
    """Asymmetric min-max quantization of ``x`` in groups of ``group`` along ``dim``, packed into uint8.

    KIVI quantizes keys per channel (groups along the token dimension) and values per token
    (groups along the channel dimension). Returns the packed codes (``8 // bits`` per byte) and
    fp16 scale and zero-point per group.
    """
    if bits not in (2, 4, 8):
        raise ValueError(f"bits must be 2, 4 or 8, got {bits}")
    xt = x.float().movedim(dim, -1)
    shape = xt.shape
    size = shape[-1]
    if size % group:
        raise ValueError(f"dimension {size} is not a multiple of the group size {group}")
    g = xt.reshape(*shape[:-1], size // group, group)
    lo = g.amin(-1, keepdim=True)
    hi = g.amax(-1, keepdim=True)
    levels = 2**bits - 1
    scale = ((hi - lo) / levels).clamp_min(1e-8)
    codes = ((g - lo) / scale).round().clamp(0, levels).to(torch.uint8).reshape(*shape)
    per_byte = 8 // bits
    codes = codes.reshape(*shape[:-1], size // per_byte, per_byte)
    shifts = torch.arange(per_byte, device=x.device, dtype=torch.uint8) * bits
    packed = (codes << shifts).sum(-1, dtype=torch.uint8) if per_byte > 1 else codes[..., 0]
    return {"packed": packed, "scale": scale.half(), "zero": lo.half(), "bits": bits, "dim": dim, "group": group}


def dequantize(q: dict[str, torch.Tensor | int], dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`quantize`."""
    bits, dim, group = int(q["bits"]), int(q["dim"]), int(q["group"])
    packed = q["packed"]
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, device=packed.device, dtype=torch.uint8) * bits
    codes = (packed[..., None] >> shifts) & (2**bits - 1) if per_byte > 1 else packed[..., None]
    codes = codes.reshape(*packed.shape[:-1], packed.shape[-1] * per_byte).float()
    size = codes.shape[-1]
    g = codes.reshape(*codes.shape[:-1], size // group, group)
    x = g * q["scale"].float() + q["zero"].float()
    return x.reshape(*codes.shape).movedim(-1, dim).to(dtype)


def quantized_bytes(q: dict[str, torch.Tensor | int]) -> int:
    return sum(t.numel() * t.element_size() for t in (q["packed"], q["scale"], q["zero"]))
