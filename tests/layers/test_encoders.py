"""The layers stage on a BERT-style encoder (tiny random BERT): exactness, batching, bookkeeping."""

from __future__ import annotations

import pytest
import torch

import tokenzip as tz
from tokenzip.layers.runtime import attach_layers

ENCODER_METHODS = ["tome", "pitome", "cls_attention", "zero_tprune", "dart", "layers.random"]
TEXTS = [
    "the quick brown fox jumps over the lazy dog and the cat sat on the mat " * 2,
    "hello world",
    "magic number 42 is the key value of the city river near the blue house",
    "one two three four five six seven eight nine",
]


@pytest.fixture(scope="module")
def batch(tiny_bert):
    _, tok = tiny_bert
    return tok(TEXTS, padding=True, return_tensors="pt")


def run(model, batch, method=None):
    with torch.no_grad():
        if method is None:
            return model(**batch).last_hidden_state
        with tz.compress(model, method):
            return model(**batch).last_hidden_state


@pytest.mark.parametrize("name", ENCODER_METHODS)
def test_ratio_zero_equals_the_unmodified_model_exactly(tiny_bert, batch, name):
    model, _ = tiny_bert
    assert torch.equal(run(model, batch, tz.get_method(name, ratio=0.0)), run(model, batch))


@pytest.mark.parametrize("name", ENCODER_METHODS)
def test_batch_rows_get_the_same_result_as_batch_one(tiny_bert, batch, name):
    model, tok = tiny_bert
    method = tz.get_method(name, ratio=0.5)
    together = run(model, batch, method)
    assert method.last_report.ratio > 0.4
    for i, text in enumerate(TEXTS):
        alone = run(model, tok([text], return_tensors="pt"), method)
        n = alone.shape[1]
        assert torch.allclose(together[i, :n], alone[0], atol=1e-5), f"row {i}"


@pytest.mark.parametrize("name", ["tome", "pitome"])
@pytest.mark.parametrize("ratio", [0.3, 0.6, 0.9])
def test_merged_sizes_sum_to_the_input_length(tiny_bert, batch, name, ratio):
    model, _ = tiny_bert
    method = tz.get_method(name, ratio=ratio, layers=(0, 1, 2, 3), restore=False)
    with torch.no_grad(), attach_layers(model, method) as runtime:
        model(**batch)
    state = runtime.state
    real = batch["attention_mask"].sum(-1)
    assert torch.equal((state.size * state.valid).sum(-1), real.float())
    # every real input token lives in a valid slot; padding tokens are tracked nowhere
    assert bool((state.source >= 0).eq(batch["attention_mask"].bool()).all())
    assert bool(state.valid.gather(1, state.source.clamp(min=0))[state.source >= 0].all())
    assert method.last_report.kept == state.valid.sum(-1).tolist()


def test_restore_gives_back_the_input_length_and_merged_tokens_share_a_vector(tiny_bert, batch):
    model, _ = tiny_bert
    method = tz.get_method("tome", ratio=0.5)
    with torch.no_grad(), attach_layers(model, method) as runtime:
        out = model(**batch).last_hidden_state
    assert out.shape[:2] == batch["input_ids"].shape
    source = runtime.state.source[0]
    groups = {}
    for i, slot in enumerate(source.tolist()):
        groups.setdefault(slot, []).append(i)
    merged = [g for g in groups.values() if len(g) > 1]
    assert merged, "tome at ratio 0.5 merges something"
    for g in merged:
        assert torch.equal(out[0, g[0]], out[0, g[1]])


def test_restore_exit_pruned_tokens_keep_the_state_they_had_when_they_left(tiny_bert, batch):
    model, _ = tiny_bert
    method = tz.get_method("cls_attention", ratio=0.5, layers=(1,), restore="exit")
    outputs = {}
    hook = model.encoder.layer[1].register_forward_hook(lambda m, a, o: outputs.setdefault("l1", o.clone()))
    try:
        with torch.no_grad(), attach_layers(model, method) as runtime:
            out = model(**batch).last_hidden_state
    finally:
        hook.remove()
    pruned = (runtime.state.source < 0) & batch["attention_mask"].bool()
    assert pruned.any()
    assert torch.equal(out[pruned], outputs["l1"][pruned])
    assert torch.equal(out[:, 0], run(model, batch, method)[:, 0])  # [CLS] is protected


def test_budget_keeps_that_many_candidates(tiny_bert, batch):
    model, _ = tiny_bert
    method = tz.get_method("cls_attention", budget=3)
    run(model, batch, method)
    assert method.last_report.kept == [min(4, n) for n in batch["attention_mask"].sum(-1).tolist()]


def test_explicit_removed_counts(tiny_bert, tok_single=None):
    model, tok = tiny_bert
    inputs = tok([TEXTS[0]], return_tensors="pt")
    method = tz.get_method("tome", removed=(5, 3, 2), layers=(0, 1, 2))
    run(model, inputs, method)
    assert method.last_report.kept == [inputs["input_ids"].shape[1] - 10]
    assert method.last_report.tokens_per_layer[1:4] == [inputs["input_ids"].shape[1] - k for k in (5, 8, 10)]


def test_attention_implementation_is_restored_even_after_an_error(tiny_bert, batch):
    model, _ = tiny_bert
    before = model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"), tz.compress(model, tz.get_method("tome", ratio=0.5)):
        assert model.config._attn_implementation != before
        raise RuntimeError("boom")
    assert model.config._attn_implementation == before
    assert not any(layer._forward_hooks for layer in model.encoder.layer)


def test_restore_nearest_pruned_tokens_copy_the_most_similar_staying_token(tiny_bert, batch):
    model, _ = tiny_bert
    method = tz.get_method("cls_attention", ratio=0.5, layers=(1,))
    outputs = {}
    hook = model.encoder.layer[1].register_forward_hook(lambda m, a, o: outputs.setdefault("l1", o.clone()))
    try:
        with torch.no_grad(), attach_layers(model, method) as runtime:
            out = model(**batch).last_hidden_state
    finally:
        hook.remove()
    state, real = runtime.state, batch["attention_mask"].bool()
    pruned = (state.source < 0) & real
    h = torch.nn.functional.normalize(outputs["l1"], dim=-1)
    for b, i in pruned.nonzero().tolist()[:10]:
        stayed = ((state.source[b] >= 0) & real[b]).nonzero().flatten()
        nearest = stayed[(h[b, stayed] @ h[b, i]).argmax()]
        assert torch.equal(out[b, i], out[b, nearest])


@pytest.mark.parametrize("name", ["tome", "pitome"])
def test_merging_by_hidden_states_needs_no_attention_statistics(tiny_bert, batch, name):
    model, _ = tiny_bert
    method = tz.get_method(name, ratio=0.5, metric="hidden")
    assert method.needs == frozenset()
    assert torch.equal(run(model, batch, tz.get_method(name, ratio=0.0, metric="hidden")), run(model, batch))
    out = run(model, batch, method)
    assert method.last_report.ratio > 0.4 and out.shape[:2] == batch["input_ids"].shape
