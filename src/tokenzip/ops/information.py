"""Information-theoretic token scores from a small causal LM's losses (prompt stage).

Self-information (Selective Context, Li et al., 2023, arXiv 2310.06201; LLMLingua, Jiang et al., 2023, arXiv
2310.05736), contrastive perplexity (LongLLMLingua, Jiang et al., 2024, arXiv 2310.06839) and approximated mutual
information (LongCodeZip, Shi et al., 2025, arXiv 2510.00446).

Pure tensor functions: no model code, no runtime objects, no transformers.
"""

from __future__ import annotations

import torch


def self_information(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Self-information ``-log p(target)`` in nats of each target under ``logits`` ``(M, V)`` -> ``(M,)``.

    Selective Context (Li et al., 2023, arXiv 2310.06201) and LLMLingua (Jiang et al., 2023, arXiv
    2310.05736) keep the tokens a small causal LM finds least predictable. Computed in float32.
    """
    logits = logits.float()
    return logits.logsumexp(dim=-1) - logits.gather(-1, targets[:, None].long())[:, 0]


def contrastive_information(plain: torch.Tensor, conditioned: torch.Tensor) -> torch.Tensor:
    """LongLLMLingua's contrastive perplexity (Jiang et al., 2024, arXiv 2310.06839): how much a
    question makes each token more predictable, ``I(x_i | x_<i) - I(x_i | question, x_<i)``."""
    return plain.float() - conditioned.float()


def mutual_information_gain(query_loss_alone: torch.Tensor, query_loss_given: torch.Tensor) -> torch.Tensor:
    """LongCodeZip's approximated mutual information (Shi et al., 2025, arXiv 2510.00446): how much each
    chunk lowers the query's perplexity, ``PPL(q) - PPL(q | chunk)``, from mean token losses ``(C,)``."""
    return query_loss_alone.float().exp() - query_loss_given.float().exp()


def mean_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """Mean negative log-likelihood (nats) of ``targets`` (N,) under ``logits`` (N, V), and N."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, targets.view(-1, 1)).squeeze(-1)
    return float(nll.mean()), int(targets.numel())
