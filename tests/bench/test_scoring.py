"""Scorers on hand-made predictions."""

from __future__ import annotations

import math

import pytest
import torch

from tokenzip.bench.scoring import embedding_fidelity, string_match_all, string_match_part, string_score
from tokenzip.ops.information import mean_nll


def test_string_match_all_counts_each_answer():
    assert string_match_all(" 4821937.", ["4821937"]) == 1.0
    assert string_match_all("The numbers are 12, 34 and 99", ["12", "34", "56", "78"]) == 0.5
    assert string_match_all("ABCDE, fghij", ["abcde", "FGHIJ", "KLMNO"]) == pytest.approx(2 / 3)
    assert string_match_all("nothing here", ["482"]) == 0.0
    assert string_match_all("48 21 937", ["4821937"]) == 0.0  # no fuzzy matching


def test_string_match_part_needs_one_answer():
    assert string_match_part("It was Paris, I think", ["paris", "Lyon"]) == 1.0
    assert string_match_part("Marseille", ["Paris", "Lyon"]) == 0.0
    assert string_score("part", "LYON", ["Paris", "lyon"]) == 1.0
    assert string_score("all", "Paris", ["Paris", "Lyon"]) == 0.5


def test_mean_nll_matches_hand_computation():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    nll, n = mean_nll(logits, torch.tensor([1, 1]))
    assert n == 2
    assert nll == pytest.approx((-math.log(3 / 4) - math.log(1 / 5)) / 2)


def test_embedding_fidelity():
    torch.manual_seed(0)
    reference = torch.randn(30, 8)
    same = embedding_fidelity(reference, reference * 2.0)
    assert same == {"cosine": pytest.approx(1.0), "neighbours": pytest.approx(1.0)}
    flipped = embedding_fidelity(reference, -reference)
    assert flipped["cosine"] == pytest.approx(-1.0)
    assert flipped["neighbours"] == pytest.approx(1.0)  # -x has the same neighbours as x
    # swapping two passages' embeddings: their cosines change, and so do their neighbour sets
    swapped = reference.clone()
    swapped[[0, 1]] = reference[[1, 0]]
    result = embedding_fidelity(reference, swapped, k=3)
    cos = torch.nn.functional.cosine_similarity(reference[0], reference[1], dim=0)
    assert result["cosine"] == pytest.approx((28 + 2 * float(cos)) / 30, abs=1e-5)
    assert result["neighbours"] < 1.0
