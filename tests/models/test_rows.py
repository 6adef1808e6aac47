"""Several rows in one forward (tokenzip.models.rows): each row's logits are those it gets alone, whatever its cache
(dense, evicted per head, quantized, sliding-window), its length, or the number of tokens it feeds."""

from __future__ import annotations

import pytest
import torch

import tokenzip as tz
from tokenzip.kv.answer import answer_tokens, prefill
from tokenzip.models.rows import Row, forward_rows

CONTEXT = " ".join(f"Item {i} is red number {i * 37 % 101}." for i in range(30))
METHODS = (None, "snapkv", "knorm", "adakv")


def _compressed(model, tok, method, text=CONTEXT):
    m = tz.get_method(method, stage="kv", ratio=0.5) if method else None
    return prefill(model, tok, text, [m] if m else []).compress(m)


def _teacher_forced(model, rows, feeds, names, steps):
    """Logits of every step, each row fed its own prompt, then fixed tokens of its own (no decision taken)."""
    out = [forward_rows(model, rows, feeds)]
    for s in range(steps):
        out.append(forward_rows(model, rows, [[7 + 5 * s + 3 * name] for name in names]))
    return torch.stack(out, dim=1)  # (rows, steps + 1, vocab)


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen2"])
def test_rows_together_give_each_row_its_logits_alone(tiny, family):
    model, tok = tiny(family)
    entries = [_compressed(model, tok, m, CONTEXT[: 400 + 150 * k]) for k, m in enumerate(METHODS)]

    def rows():
        return [Row.after(c.cache, c.masks, c.seen) for c in entries] + [Row.empty(model)]

    feeds = [tok(q, add_special_tokens=False).input_ids for q in ("Which?", "Where is item 3?", "What", "Red?")]
    feeds.append(tok("A whole prompt of a few words, longer than the sliding window of sixteen tokens.").input_ids)
    together = _teacher_forced(model, rows(), feeds, range(len(feeds)), 6)
    alone = torch.cat([_teacher_forced(model, [row], [feed], [r], 6)
                       for r, (row, feed) in enumerate(zip(rows(), feeds))])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    spread = (alone.amax(-1) - alone.amin(-1)).min()
    assert spread > 1e-2  # the comparison is not between flat distributions


def test_a_row_continues_a_compressed_cache_as_answer_tokens_does(tiny):
    model, tok = tiny("llama")
    comp = _compressed(model, tok, "snapkv")
    question = tok("Which item is red?", add_special_tokens=False).input_ids
    row = Row.after(comp.cache, comp.masks, comp.seen)
    logits = [forward_rows(model, [row], [question])[0]]
    ref_tokens = list(answer_tokens(model, comp, torch.tensor([question]), 6, stop=set()))
    for t in ref_tokens[:-1]:
        logits.append(forward_rows(model, [row], [[t]])[0])
    margins = [lg.topk(2).values for lg in logits]
    assert all(float(m[0] - m[1]) > 1e-4 for m in margins)  # no near-tie decides a token
    assert [int(lg.argmax()) for lg in logits] == ref_tokens
    assert row.position == comp.seen + len(question) + len(ref_tokens) - 1


def test_fork_and_sources_are_independent(tiny):
    model, tok = tiny("llama")
    comp = _compressed(model, tok, "snapkv")
    stored = [layer.keys.shape[-2] for layer in comp.cache.layers]
    row = Row.after(comp.cache, comp.masks, comp.seen)
    forward_rows(model, [row], [[5, 6, 7]])
    twin = row.fork()
    a = forward_rows(model, [row], [[9]])
    b = forward_rows(model, [twin], [[9]])
    torch.testing.assert_close(a, b)
    assert [layer.keys.shape[-2] for layer in comp.cache.layers] == stored  # the source cache never grew
    assert row.cache.layers[0].keys.shape[-2] == stored[0] + 4


def test_forward_rows_refuses_empty_feeds(tiny):
    model, _ = tiny("llama")
    with pytest.raises(ValueError, match="non-empty"):
        forward_rows(model, [Row.empty(model)], [[]])


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_a_decode_batch_gives_the_logits_of_forward_rows_as_rows_come_and_go(tiny, family):
    from tokenzip.models.decode_batch import DecodeBatch

    model, tok = tiny(family)
    entries = [_compressed(model, tok, m, CONTEXT[: 300 + 150 * k]) for k, m in enumerate(METHODS)]
    feeds = [tok(q, add_special_tokens=False).input_ids for q in ("Which?", "Where is item 3?", "What", "Red?")]

    def rows():
        return [Row.after(c.cache, c.masks, c.seen) for c in entries]

    reference, buffered = rows(), rows()
    for r in range(4):  # prompts fed row by row, as the server feeds them
        forward_rows(model, [reference[r]], [feeds[r]])
        forward_rows(model, [buffered[r]], [feeds[r]])
    batch = DecodeBatch(model)
    members = [0, 1]  # rows 2 and 3 join later, row 0 leaves early
    for step in range(24):  # more steps than gemma3's 16-token window
        if step == 5:
            members = [0, 1, 2, 3]
        if step == 12:
            members = [1, 2, 3]
        tokens = [7 + 3 * step + r for r in members]
        want = forward_rows(model, [reference[r] for r in members], [[t] for t in tokens])
        batch.set_rows([buffered[r] for r in members])
        got = batch.step(tokens)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert [buffered[r].position for r in members] == [reference[r].position for r in members]
    assert batch.layers[0].width < batch.layers[0].keys.shape[2]  # steps wrote in place


def test_a_decode_batch_takes_fed_rows_and_one_token_per_row(tiny):
    from tokenzip.models.decode_batch import DecodeBatch

    model, _ = tiny("llama")
    batch = DecodeBatch(model)
    row = Row.empty(model)
    with pytest.raises(ValueError, match="after its prompt was fed"):
        batch.set_rows([row])
    forward_rows(model, [row], [[5, 6, 7]])
    batch.set_rows([row])
    with pytest.raises(ValueError, match="one token per row"):
        batch.step([1, 2])
