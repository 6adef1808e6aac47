"""KIVI-style quantization (tokenzip.ops.quantize): the round trip stays within half a step."""

from __future__ import annotations

import pytest
import torch

from tokenzip.ops.quantize import dequantize, quantize


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_round_trip_error_is_bounded(bits):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 128, 16)
    for dim, group in ((-2, 32), (-1, 16)):
        q = quantize(x, bits, dim=dim, group=group)
        err = (dequantize(q, torch.float32) - x).abs()
        step = (q["scale"].float()).max()
        assert float(err.max()) <= float(step) / 2 + 1e-2 * float(step) + 1e-3
        assert q["packed"].dtype == torch.uint8 and q["packed"].numel() == x.numel() * bits // 8
