"""Which original entries a compressed layer holds unchanged (tokenzip.ops.kept)."""

from __future__ import annotations

import torch

from tokenzip.ops.kept import kept_entries


def test_gathered_entries_are_found_per_head_and_invalid_ones_are_not():
    torch.manual_seed(0)
    original = torch.randn(2, 6, 4)
    idx = torch.tensor([[0, 2, 5], [1, 2, 3]])
    stored = torch.gather(original, 1, idx[..., None].expand(-1, -1, 4))
    valid = torch.tensor([[True, True, True], [True, False, True]])
    kept, matched = kept_entries(original, stored, valid)
    assert kept.tolist() == [[True, False, True, False, False, True], [False, True, False, True, False, False]]
    assert matched.tolist() == [3, 2]


def test_changed_entries_do_not_count():
    original = torch.randn(1, 5, 4)
    stored = torch.cat([original[:, :2], (original[:, 2:4] + original[:, 3:5]) / 2], dim=1)  # two kept, two merged
    kept, matched = kept_entries(original, stored)
    assert kept.tolist() == [[True, True, False, False, False]] and matched.tolist() == [2]
