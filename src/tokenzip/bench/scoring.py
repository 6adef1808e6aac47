"""Scores: RULER's string match, negative log-likelihood, and embedding fidelity.

String match follows RULER (Hsieh et al. 2024, arXiv 2404.06654): case-insensitive substring
tests of each reference in the prediction; ``all`` averages them (every answer must be named),
``part`` takes the best (any one answer is enough). Scores are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tokenzip.errors import unknown_name


def string_match_all(prediction: str, answers: Sequence[str]) -> float:
    """Fraction of ``answers`` that occur in ``prediction`` (case-insensitive)."""
    text = prediction.lower()
    return sum(a.lower() in text for a in answers) / len(answers) if answers else 0.0


def string_match_part(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when any of ``answers`` occurs in ``prediction`` (case-insensitive), else 0.0."""
    text = prediction.lower()
    return float(any(a.lower() in text for a in answers))


STRING_METRICS = {"all": string_match_all, "part": string_match_part}


def string_score(metric: str, prediction: str, answers: Sequence[str]) -> float:
    if metric not in STRING_METRICS:
        raise unknown_name("metric", metric, STRING_METRICS)
    return STRING_METRICS[metric](prediction, answers)


def embedding_fidelity(reference: torch.Tensor, compressed: torch.Tensor, k: int = 10) -> dict[str, float]:
    """How well compressed embeddings ``(N, D)`` preserve uncompressed ones ``(N, D)``.

    ``cosine``: mean cosine similarity of each passage's compressed embedding to its own
    uncompressed one. ``neighbours``: for each passage, the share of its ``k`` nearest other passages
    (cosine, uncompressed embeddings) that are still among its ``k`` nearest with compressed ones.
    """
    ref = torch.nn.functional.normalize(reference.float(), dim=-1)
    comp = torch.nn.functional.normalize(compressed.float(), dim=-1)
    n = ref.shape[0]
    cosine = float((ref * comp).sum(-1).mean())
    k = min(k, n - 1)
    if k < 1:
        return {"cosine": cosine, "neighbours": float("nan")}
    eye = torch.eye(n, dtype=torch.bool)
    near_ref = (ref @ ref.T).masked_fill(eye, float("-inf")).topk(k, dim=-1).indices
    near_comp = (comp @ comp.T).masked_fill(eye, float("-inf")).topk(k, dim=-1).indices
    shared = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(near_ref, near_comp)]
    return {"cosine": cosine, "neighbours": sum(shared) / (k * n)}
