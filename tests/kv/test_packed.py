"""Packed storage (PackedLayer): head-adaptive selections and padded batches hold only the entries they keep,
and attend exactly as the padded rectangle did."""

import pytest
import torch

import tokenzip as tz
from tokenzip.hooks import attach_method
from tokenzip.kv.cache import CompressedLayer, PackedLayer, QuantizedLayer, cache_bytes, layer_length, padded_storage
from tokenzip.kv.runtime import target_layers
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.ops.packing import keep_newest, pack, right_aligned, unpack
from tokenzip.ops.topk import keep_topk_per_head
from tokenzip.testing import DECODER_FAMILIES

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 6
QUESTION = "\nQuestion: What is the special magic number?\nAnswer: The special magic number is"
OTHER = "\nQuestion: Where does the cat jump?\nAnswer: The cat jumps"
HEAD_ADAPTIVE = ("adakv", "kvzip", "kvzip_fast")
LENGTH_BYTES = 8  # PackedLayer.lengths: one int64 per (row, KV head)


def _method(name, tok=None, **kw):
    if name.startswith("kvzip"):
        kw["tokenizer"] = tok
    return tz.get_method(name, stage="kv", **kw)


def _generate(model, enc, method, n=6):
    """Greedy tokens, per-step logits and the cache left after generating with ``method`` attached."""
    with attach_method(model, method) as runtime:
        out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
        return out.sequences, torch.stack(out.logits), runtime.cache


def _valid_last(b, h, k, lengths):
    return right_aligned(lengths, k).expand(b, h, k)


# --- the ops and the layer on hand-built entries ------------------------------------------------------------


def test_pack_and_unpack_give_back_the_valid_entries_right_aligned():
    x = torch.randn(2, 3, 5, 4)
    lengths = torch.tensor([[5, 2, 0], [3, 4, 1]])
    valid = _valid_last(2, 3, 5, lengths)
    flat, got = pack(x, valid)
    assert flat.shape == (int(lengths.sum()), 4) and torch.equal(got, lengths)
    assert torch.equal(unpack(flat, lengths), x.masked_fill(~valid[..., None], 0.0))
    newer = torch.randn(2, 3, 2, 4)
    assert torch.equal(unpack(flat, lengths, 5, (newer,)), torch.cat([x.masked_fill(~valid[..., None], 0), newer], 2))
    kept_flat, kept = keep_newest(flat, lengths, 2)
    assert kept.tolist() == [[2, 2, 0], [2, 2, 1]]
    assert torch.equal(unpack(kept_flat, kept, 5), x.masked_fill(~_valid_last(2, 3, 5, kept)[..., None], 0.0))


def test_packed_layer_holds_only_kept_entries_and_appends_to_every_head():
    b, h, k, d = 1, 3, 6, 8
    x, v = torch.randn(b, h, k, d), torch.randn(b, h, k, d)
    lengths = torch.tensor([[6, 1, 3]])
    valid = _valid_last(b, h, k, lengths)
    layer = PackedLayer.pack(x, v, valid, seen=20)
    assert isinstance(layer, PackedLayer) and layer.stored() == 6
    assert layer.nbytes() == 2 * 10 * d * 4 + h * LENGTH_BYTES  # 10 entries kept, not 3 x 6
    assert torch.equal(layer.valid(), valid)
    new_k, new_v = torch.randn(b, h, 1, d), torch.randn(b, h, 1, d)
    keys, values = layer.update(new_k, new_v)
    assert torch.equal(keys, torch.cat([x.masked_fill(~valid[..., None], 0), new_k], 2))
    assert torch.equal(values, torch.cat([v.masked_fill(~valid[..., None], 0), new_v], 2))
    assert layer.get_seq_length() == 21 and layer.stored() == 7 and layer.kept().tolist() == [[7, 2, 4]]
    assert layer.get_mask_sizes(1) == (8, 21 - 7)
    assert layer.nbytes() == 2 * 13 * d * 4 + h * LENGTH_BYTES
    same = PackedLayer.pack(x, v, _valid_last(b, h, k, torch.tensor([[4, 4, 4]])), seen=20)
    assert isinstance(same, CompressedLayer) and same.stored() == 4  # equal counts: a rectangle, no padding


def test_a_packed_window_keeps_what_the_padded_window_keeps():
    """A compressed sliding-window layer keeps the last ``window - 1`` slots of the right-aligned rectangle: per
    head, its newest ``window - 1`` entries."""
    b, h, k, d, window = 1, 2, 6, 4, 5
    x = torch.randn(b, h, k, d)
    valid = _valid_last(b, h, k, torch.tensor([[6, 2]]))
    packed = PackedLayer.pack(x, x, valid, seen=30, window=window)
    padded = CompressedLayer(x.masked_fill(~valid[..., None], 0), x, seen=30, window=window)
    for _ in range(6):
        new = torch.randn(b, h, 1, d)
        assert torch.equal(packed.update(new, new)[0][..., -packed.stored() - 1:, :][..., -window:, :],
                           padded.update(new, new)[0][..., -window:, :])
    assert packed.kept().tolist() == [[4, 4]] and padded.stored() == 4


def test_rows_can_be_selected_and_repeated():
    x = torch.randn(2, 2, 4, 3)
    lengths = torch.tensor([[4, 1], [2, 3]])
    layer = PackedLayer.pack(x, x, _valid_last(2, 2, 4, lengths), seen=10)
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.kept().tolist() == [[2, 3]]
    assert torch.equal(layer.entries()[0][0, :, -3:], unpack(*pack(x, _valid_last(2, 2, 4, lengths)), 4)[1, :, -3:])
    layer.batch_repeat_interleave(2)
    assert layer.kept().tolist() == [[2, 3], [2, 3]]


def test_head_adaptive_selection_is_valid_last():
    scores = torch.tensor([[[9.0, 1.0, 8.0, 7.0], [0.1, 5.0, 0.2, 0.3]]])
    idx, valid = keep_topk_per_head(scores, torch.tensor([2]), floor=0.5)
    assert valid.tolist() == [[[True, True, True], [False, False, True]]]
    assert idx[0, 0].tolist() == [0, 2, 3] and idx[0, 1, -1].item() == 1


# --- on the tiny models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_packed_generates_what_padded_generates(tiny, family):
    """Same kept entries, same attention: greedy tokens and every step's logits are identical, with fewer bytes."""
    model, tok = tiny(family)
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    for name in HEAD_ADAPTIVE:
        method = _method(name, tok, ratio=0.5)
        tokens, logits, cache = _generate(model, enc, method)
        with padded_storage():
            ref_tokens, ref_logits, ref_cache = _generate(model, enc, method)
        assert any(isinstance(layer, PackedLayer) for layer in cache.layers), (family, name)
        assert not any(isinstance(layer, PackedLayer) for layer in ref_cache.layers)
        assert torch.equal(tokens, ref_tokens) and torch.equal(logits, ref_logits), (family, name)
        assert cache_bytes(cache) < cache_bytes(ref_cache), (family, name)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_ratio_zero_is_the_dense_model(tiny, family):
    model, tok = tiny(family)
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    reference = model.generate(**enc, max_new_tokens=6, do_sample=False, output_logits=True,
                               return_dict_in_generate=True)
    for name in HEAD_ADAPTIVE:
        tokens, logits, _ = _generate(model, enc, _method(name, tok, ratio=0.0))
        assert torch.equal(tokens, reference.sequences) and torch.equal(logits, torch.stack(reference.logits)), name


@pytest.mark.parametrize("name", ["kvzip_fast", "adakv"])
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_bytes_held_are_the_entries_kept(tiny, name, ratio):
    """Bytes held = kept entries (counted per layer, row and head from the selection) x head_dim x 2 x element size,
    plus one length per (row, head): (1 - ratio) of the dense cache on a full-attention model; the padded rectangle
    held more."""
    model, tok = tiny("llama")
    adapter = DecoderAdapter(model)
    method = _method(name, tok, ratio=ratio)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    with padded_storage():
        padded = pre.compress(method)
    packed = pre.compress(method)
    per_entry = 2 * adapter.head_dim * 4  # keys and values, float32
    targets = target_layers(adapter, False)
    assert len(targets) == adapter.num_layers  # full attention: the ratio is the whole cache's
    selected = 0
    for i in targets:
        valid = padded.masks.valid.get(i)
        per_head = valid[0].sum(-1) if valid is not None else torch.full((adapter.num_kv_heads,),
                                                                          layer_length(padded.cache.layers[i]))
        layer = packed.cache.layers[i]
        held = layer.kept()[0] if isinstance(layer, PackedLayer) else torch.full_like(per_head, layer_length(layer))
        assert torch.equal(held, per_head), i  # the same entries per head
        selected += int(per_head.sum())
    n_packed = sum(isinstance(layer, PackedLayer) for layer in packed.cache.layers)
    assert n_packed > 0
    assert packed.bytes == selected * per_entry + n_packed * adapter.num_kv_heads * LENGTH_BYTES
    kept = method.kept(pre.n_tokens)
    assert selected == kept * adapter.num_kv_heads * len(targets)  # one budget, spread over heads (and layers)
    assert packed.bytes / pre.bytes == pytest.approx(kept / pre.n_tokens, abs=0.002)
    assert kept / pre.n_tokens == pytest.approx(1 - ratio, abs=1 / pre.n_tokens)
    assert padded.bytes > packed.bytes


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_a_padded_batch_keeps_no_padding(tiny, family):
    """Rows of different lengths keep different counts: packed, each row holds its own; outputs unchanged."""
    model, tok = tiny(family)
    batch = tok([TEXT + QUESTION, TEXT[: len(TEXT) // 3] + QUESTION], return_tensors="pt", padding=True)
    for name in ("snapkv", "adakv"):
        method = _method(name, tok, ratio=0.5)
        tokens, logits, cache = _generate(model, batch, method, n=4)
        with padded_storage():
            ref_tokens, ref_logits, ref_cache = _generate(model, batch, method, n=4)
        assert torch.equal(tokens, ref_tokens) and torch.equal(logits, ref_logits), name
        assert any(isinstance(layer, PackedLayer) for layer in cache.layers), name
        assert cache_bytes(cache) < cache_bytes(ref_cache), name


def test_cache_reuse_answers_several_questions_as_padded(tiny):
    model, tok = tiny("qwen2")
    method = _method("kvzip_fast", tok, ratio=0.75)
    pre = tz.kv.prefill(model, tok, TEXT, [method])
    comp = pre.compress(method)
    before = [(type(layer), layer_length(layer), layer.nbytes()) for layer in comp.cache.layers]
    answers = [tz.kv.answer_from(model, tok, comp, q, max_new_tokens=5)[0] for q in (QUESTION, OTHER, QUESTION)]
    assert answers[0] == answers[2]  # restored between questions
    assert [(type(layer), layer_length(layer), layer.nbytes()) for layer in comp.cache.layers] == before
    with padded_storage():
        ref = pre.compress(method)
    assert [tz.kv.answer_from(model, tok, ref, q, max_new_tokens=5)[0] for q in (QUESTION, OTHER)] == answers[:2]
    through_answer = tz.kv.answer(model, tok, TEXT, [QUESTION, OTHER], method, max_new_tokens=5)
    assert [a.text for a in through_answer] == answers[:2]
    assert through_answer[0].cache_bytes == comp.bytes < ref.bytes


def test_compressed_sliding_layers_pack_too(tiny):
    model, tok = tiny("gemma3")  # 16-token windows: the compressed sliding layers are trimmed while generating
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    method = _method("adakv", ratio=0.5, compress_sliding=True)
    tokens, logits, cache = _generate(model, enc, method, n=8)
    with padded_storage():
        ref_tokens, ref_logits, _ = _generate(model, enc, method, n=8)
    assert torch.equal(tokens, ref_tokens) and torch.equal(logits, ref_logits)
    assert all(layer_length(layer) <= 15 for i, layer in enumerate(cache.layers) if DecoderAdapter(model).is_sliding(i))


def test_decoding_time_eviction_recompresses_packed_layers(tiny):
    model, tok = tiny("llama")
    enc = tok(TEXT, return_tensors="pt")
    method = _method("decoding", budget=40, interval=8, base="adakv")
    tokens, logits, cache = _generate(model, enc, method, n=30)
    with padded_storage():
        ref_tokens, ref_logits, _ = _generate(model, enc, method, n=30)
    assert torch.equal(tokens, ref_tokens) and torch.equal(logits, ref_logits)
    heads = DecoderAdapter(model).num_kv_heads
    held = [int(layer.kept().sum()) if isinstance(layer, PackedLayer) else layer_length(layer) * heads
            for layer in cache.layers]
    assert max(held) <= heads * (40 + 8)  # the layer's budget, spread over its heads by adakv
    assert any(isinstance(layer, PackedLayer) for layer in cache.layers)


def test_chunked_prefill_packs_between_chunks(tiny):
    model, tok = tiny("llama")
    method = _method("adakv", ratio=0.5, chunk_size=32)
    packed = tz.kv.answer(model, tok, TEXT, [QUESTION, OTHER], method, max_new_tokens=5)
    with padded_storage():
        padded = tz.kv.answer(model, tok, TEXT, [QUESTION, OTHER], method, max_new_tokens=5)
    assert [a.text for a in packed] == [a.text for a in padded]
    assert packed[0].cache_bytes < padded[0].cache_bytes


def test_kivi_evicting_head_adaptively_still_quantizes(tiny):
    model, tok = tiny("llama")
    alone = _method("kivi", bits=2)
    composed = _method("kivi", bits=2, evict="adakv", ratio=0.5)
    pre = tz.kv.prefill(model, tok, TEXT, [alone, composed])
    a, c = pre.compress(alone), pre.compress(composed)
    assert all(isinstance(layer, QuantizedLayer) for layer in c.cache.layers)
    assert c.bytes < a.bytes
    assert tz.kv.answer_from(model, tok, c, QUESTION, max_new_tokens=3)[1] >= 0
