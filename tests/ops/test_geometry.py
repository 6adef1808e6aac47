"""Scorers from keys and hidden states alone (tokenzip.ops.geometry) on hand-built cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenzip.ops.geometry import energy_scores


def test_energy_is_high_in_crowded_neighbourhoods():
    metric = torch.tensor([[[1.0, 0.0], [1.0, 0.05], [0.98, 0.0], [0.0, 1.0]]])
    e = energy_scores(metric, torch.ones(1, 4, dtype=torch.bool), margin=0.5)
    assert int(e.argmin()) == 3  # the isolated token has the lowest energy
    sim = F.normalize(metric, dim=-1) @ F.normalize(metric, dim=-1).transpose(1, 2)
    assert torch.allclose(e, F.elu(sim - 0.5).mean(-1), atol=1e-6)
