"""Attention-statistics scorers (tokenzip.ops.attention) against hand-computed softmaxes."""

from __future__ import annotations

import torch

from tokenzip.ops.attention import (
    cls_attention,
    expected_attention_scores,
    last_tokens_attention,
    noncausal_chunk_attention,
    normalized_attention,
    received_attention,
    replay_attention_mass,
    replay_attention_max,
    self_replay_attention,
    weighted_pagerank,
    window_attention,
)
from tokenzip.ops.rope import rotate_half, unrotate


def test_window_attention_matches_hand_softmax():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[None, None]
    queries = torch.tensor([[2.0, 0.0], [0.0, 3.0]])[None, None]  # positions 1 and 2
    attn = window_attention(queries, keys, scaling=0.5)
    row0 = torch.softmax(torch.tensor([1.0, 0.0]), 0)  # query at position 1 sees keys 0..1
    row1 = torch.softmax(torch.tensor([0.0, 1.5, 1.5]), 0)
    assert torch.allclose(attn[0, 0, 0, :2], row0) and attn[0, 0, 0, 2] == 0
    assert torch.allclose(attn[0, 0, 1], row1)


def test_received_attention_is_the_causal_column_sum():
    torch.manual_seed(2)
    q, k = torch.randn(1, 1, 5, 3), torch.randn(1, 1, 5, 3)
    logits = (q[0, 0] @ k[0, 0].T) * 0.7
    logits = logits.masked_fill(torch.ones(5, 5).triu(1).bool(), float("-inf"))
    assert torch.allclose(received_attention(q, k, 0.7, chunk=2)[0, 0], torch.softmax(logits, -1).sum(0), atol=1e-6)


def test_expected_attention_mean_term_is_the_rotated_query_logit():
    torch.manual_seed(3)
    d, p = 8, 5
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    angle = torch.cat([p * inv, p * inv])
    cos, sin = angle.cos()[None], angle.sin()[None]
    q = torch.randn(1, 1, 1, d)  # one pre-RoPE query: mean = q, covariance = 0
    k = torch.randn(1, 1, 6, d)
    scores = expected_attention_scores(q, k, cos, sin, scaling=0.3, cov_weight=0.0)
    q_rot = q * cos + rotate_half(q) * sin
    assert torch.allclose(scores[0, 0], (k[0, 0] @ q_rot[0, 0, 0]) * 0.3, atol=1e-5)
    assert torch.allclose(unrotate(q_rot, cos, sin), q, atol=1e-6)


def test_expected_attention_covariance_term():
    d = 4
    q = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])[None, None]  # mean 0, variance 2 on axis 0
    k = torch.eye(d)[None, None]
    cos, sin = torch.ones(1, d), torch.zeros(1, d)  # no rotation
    scores = expected_attention_scores(q, k, cos, sin, scaling=1.0, cov_weight=1.0)
    assert torch.allclose(scores[0, 0], torch.tensor([1.0, 0, 0, 0]))  # 0.5 * var(=2) on axis 0


def test_replay_attention_max_matches_loop():
    torch.manual_seed(4)
    keys = torch.randn(1, 1, 7, 3)  # 4 stored + 3 replay
    queries = torch.randn(1, 2, 3, 3)
    out = replay_attention_max(queries, keys, 0.5, n_context=4, chunk=2)
    ref = torch.zeros(2, 4)
    for h in range(2):
        for j in range(3):
            logits = (keys[0, 0, : 4 + j + 1] @ queries[0, h, j]) * 0.5
            ref[h] = torch.maximum(ref[h], torch.softmax(logits, 0)[:4])
    assert torch.allclose(out[0, 0], ref.max(0).values, atol=1e-6)


def test_replay_attention_with_several_kv_heads_matches_a_loop():
    """Two KV heads of three query heads each, chunks that split the replay unevenly: each query head is scored
    against its own KV head, its max and mean taken over its group only."""
    torch.manual_seed(5)
    stored, replayed, n_context, d = 6, 5, 5, 4
    keys = torch.randn(1, 2, stored + replayed, d)
    queries = torch.randn(1, 6, replayed, d)
    best = replay_attention_max(queries, keys, 0.7, n_context=n_context, chunk=2)
    mass = replay_attention_mass(queries, keys, 0.7, n_context=n_context, chunk=2)
    attn = torch.zeros(6, replayed, n_context)
    for h in range(6):
        for j in range(replayed):
            logits = keys[0, h // 3, : stored + j + 1] @ queries[0, h, j] * 0.7
            attn[h, j] = torch.softmax(logits, 0)[:n_context]
    grouped = attn.view(2, 3, replayed, n_context)
    assert torch.allclose(best[0], grouped.amax(dim=(1, 2)), atol=1e-6)
    assert torch.allclose(mass[0], grouped.mean(dim=(1, 2)), atol=1e-6)


def test_normalized_attention_divides_by_visibility():
    attn = torch.zeros(1, 1, 2, 3)
    attn[0, 0, :, 0] = 0.5
    attn[0, 0, 1, 2] = 0.5
    out = normalized_attention(attn)[0, 0]
    assert torch.allclose(out, torch.tensor([0.5, 0.0, 0.5]))  # token 2 is seen by one query only


def test_noncausal_chunk_attention_matches_hand_softmax():
    torch.manual_seed(1)
    q, k = torch.randn(1, 2, 6, 4), torch.randn(1, 1, 6, 4)
    got = noncausal_chunk_attention(q, k, scaling=0.5, chunk=4)
    want = torch.zeros(1, 2, 6)
    for start in (0, 4):
        rows = slice(start, min(start + 4, 6))
        attn = torch.softmax(q[:, :, rows] @ k[:, :, rows].transpose(-1, -2) * 0.5, dim=-1)
        want[..., rows] = attn.sum(2)
    assert torch.allclose(got, want, atol=1e-6)


def test_self_replay_attention_matches_a_loop():
    torch.manual_seed(3)
    n, d = 7, 4
    q, k = torch.randn(1, 2, n, d), torch.randn(1, 1, n, d)
    shifted = torch.randn(1, 2, n, d)  # the same queries seen from later positions
    best, mean = self_replay_attention(q, k, 0.5, shifted, chunk=3)
    rows = []
    for t in range(n):
        logits = torch.cat([shifted[:, :, t] @ k[0, 0].T * 0.5, q[:, :, t] @ k[0, 0, : t + 1].T * 0.5], dim=-1)
        rows.append(torch.softmax(logits, dim=-1)[..., :n])
    attn = torch.stack(rows, dim=2)  # (1, 2, n queries, n keys)
    assert torch.allclose(best, attn.amax(2).amax(1, keepdim=True), atol=1e-6)
    assert torch.allclose(mean, attn.mean(2).mean(1, keepdim=True), atol=1e-6)


def test_self_replay_attention_of_a_chunk_re_reads_only_the_chunk():
    """A chunked prefill (issue 23): the last Q of N entries are re-read; each re-reading query sees every entry
    through its shifted copy and, causally, only the re-read ones (the chunk), not the kept entries before it."""
    torch.manual_seed(4)
    n, q, d = 9, 4, 4
    past = n - q
    k = torch.randn(1, 1, n, d)
    queries, shifted = torch.randn(1, 2, q, d), torch.randn(1, 2, q, d)
    best, mean = self_replay_attention(queries, k, 0.5, shifted, chunk=3)
    rows = []
    for t in range(q):
        own = queries[:, :, t] @ k[0, 0, past : past + t + 1].T * 0.5  # the chunk's entries up to t only
        logits = torch.cat([shifted[:, :, t] @ k[0, 0].T * 0.5, own], dim=-1)
        rows.append(torch.softmax(logits, dim=-1)[..., :n])
    attn = torch.stack(rows, dim=2)  # (1, 2, q queries, n keys)
    assert best.shape == mean.shape == (1, 1, n)
    assert torch.allclose(best, attn.amax(2).amax(1, keepdim=True), atol=1e-6)
    assert torch.allclose(mean, attn.mean(2).mean(1, keepdim=True), atol=1e-6)


def test_cls_attention_is_the_softmax_of_the_cls_row_averaged_over_heads():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    manual = torch.softmax((q[:, :, :1] @ k.transpose(-1, -2)) * 0.5, dim=-1).mean(dim=(1, 2))
    assert torch.allclose(cls_attention(q, k, 0.5), manual, atol=1e-6)
    mask = torch.tensor([True, True, False, True, True])[None, None, None].expand(2, 1, 1, 5)
    masked = cls_attention(q, k, 0.5, mask)
    assert torch.all(masked[:, 2] == 0) and torch.allclose(masked.sum(-1), torch.ones(2))


def test_last_tokens_attention_uses_the_last_query_row():
    torch.manual_seed(1)
    q, k = torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    manual = torch.softmax(q[:, :, -1:] @ k.transpose(-1, -2) * 0.3, dim=-1).mean(dim=(1, 2))
    assert torch.allclose(last_tokens_attention(q, k, 0.3), manual, atol=1e-6)


def test_weighted_pagerank_ranks_the_token_everyone_attends_to_first():
    # every token puts most of its attention on token 2
    attn = torch.full((1, 1, 4, 4), 0.1)
    attn[..., 2] = 0.7
    s = weighted_pagerank(attn)
    assert int(s.argmax()) == 2 and torch.allclose(s.sum(), torch.tensor(1.0))


def test_self_replay_attention_with_padding_and_several_kv_heads_matches_a_loop():
    """Left padding in one row of a batch: padded keys get nothing, padded re-reading queries add nothing, the
    mean is over the row's real queries; two KV heads of two query heads each."""
    torch.manual_seed(6)
    n, d, pad = 6, 4, 2
    k = torch.randn(2, 2, n, d)
    q, shifted = torch.randn(2, 4, n, d), torch.randn(2, 4, n, d)
    valid = torch.ones(2, n, dtype=torch.bool)
    valid[1, :pad] = False
    best, mean = self_replay_attention(q, k, 0.5, shifted, valid, chunk=4)
    for b in range(2):
        real = valid[b]
        attn = torch.zeros(4, n, n)
        for h in range(4):
            key = k[b, h // 2]
            for t in range(n):
                if not real[t]:
                    continue
                original = (shifted[b, h, t] @ key.T * 0.5).masked_fill(~real, float("-inf"))
                own = (q[b, h, t] @ key[: t + 1].T * 0.5).masked_fill(~real[: t + 1], float("-inf"))
                attn[h, t] = torch.softmax(torch.cat([original, own]), 0)[:n]
        grouped = attn.view(2, 2, n, n)
        assert torch.allclose(best[b], grouped.amax(dim=(1, 2)), atol=1e-6)
        assert torch.allclose(mean[b], grouped.sum(dim=2).mean(1) / real.sum(), atol=1e-6)
