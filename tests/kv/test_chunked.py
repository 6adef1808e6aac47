"""Chunked prefill (tokenzip.kv.chunked): compress while prefilling, with the cache bounded by budget + chunk."""

import contextlib
import warnings

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.kv.cache import layer_entries, layer_length
from tokenzip.kv.chunked import chunk_sizes
from tokenzip.kv.runtime import KVRuntime, target_layers
from tokenzip.models.attachment import route_attention
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.testing import DECODER_FAMILIES

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 8
QUESTION = "\nQuestion: What is the special magic number?\nAnswer:"
SCORED = ("snapkv", "h2o", "tova", "knorm", "keydiff", "expected_attention", "streaming_llm", "pyramidkv", "adakv",
          "kvzip")


def ids_of(n, seed=0):
    return torch.randint(5, 300, (1, n), generator=torch.Generator().manual_seed(seed))


def decoder_of(model):
    return KVRuntime(model).adapter.decoder


@torch.no_grad()
def dense_in_chunks(model, ids, chunk):
    """transformers alone, the same chunks fed in turn to a plain cache: the reference of a chunked prefill."""
    decoder, cache, start = decoder_of(model), new_cache(model), 0
    for size in chunk_sizes(ids.shape[1], chunk):
        out = decoder(input_ids=ids[:, start : start + size], use_cache=True, **cache_kwargs(decoder, cache))
        start += size
    return out.last_hidden_state, cache


@torch.no_grad()
def chunked(model, ids, method, watch=None):
    """Prefill ``ids`` through the kv runtime; ``watch(runtime, cache)`` runs after every chunk."""
    decoder, cache = decoder_of(model), new_cache(model)
    runtime = KVRuntime(model, method)
    with runtime.attached():
        hook = None if watch is None else decoder.register_forward_hook(
            lambda *a: None if runtime.replaying else watch(runtime, cache))
        try:
            out = decoder(input_ids=ids, use_cache=True, **cache_kwargs(decoder, cache))
        finally:
            if hook is not None:
                hook.remove()
    return out.last_hidden_state, cache, runtime


def quiet(method_name, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tz.get_method(method_name, stage="kv", **kw)


def test_chunk_sizes_are_balanced_and_bounded():
    assert chunk_sizes(100, 32) == [25, 25, 25, 25]
    assert chunk_sizes(96, 32) == [32, 32, 32]
    assert chunk_sizes(70, 32) == [23, 23, 24]
    assert chunk_sizes(5, 32) == [5]
    for n in range(1, 200, 7):
        sizes = chunk_sizes(n, 16)
        assert sum(sizes) == n and max(sizes) <= 16 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("family", DECODER_FAMILIES)
@pytest.mark.parametrize("name", ["snapkv", "kvzip"])
def test_budget_at_least_the_context_equals_the_dense_prefill(tiny, family, name):
    """Nothing is dropped: the outputs and every cache entry equal transformers' own prefill fed the same
    chunks, bit for bit, and a single-pass prefill up to float rounding (different matmul shapes)."""
    model, tok = tiny(family)
    ids = ids_of(100)
    method = quiet(name, budget=1000, chunk_size=32)
    if name == "kvzip":
        method.tokenizer = tok
    out, cache, _ = chunked(model, ids, method)
    ref_out, ref_cache = dense_in_chunks(model, ids, 32)
    assert torch.equal(out, ref_out)
    for layer, ref in zip(cache.layers, ref_cache.layers):
        assert layer.get_seq_length() == ref.get_seq_length() == 100
        for a, b in zip(layer_entries(layer), layer_entries(ref)):
            assert torch.equal(a, b)
    with torch.no_grad():
        decoder = decoder_of(model)
        single = decoder(input_ids=ids, use_cache=True, **cache_kwargs(decoder, new_cache(model))).last_hidden_state
    torch.testing.assert_close(out, single[:, -out.shape[1] :], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_generate_with_a_large_budget_equals_transformers_chunked_generate(tiny, family):
    model, tok = tiny(family)
    enc = tok([TEXT + QUESTION, TEXT[:150] + QUESTION], return_tensors="pt", padding=True)  # left padding
    n = enc.input_ids.shape[1] // 3 * 3  # three equal chunks: transformers' split and tokenzip's agree
    enc = {k: v[:, -n:] for k, v in enc.items()}
    chunk = n // 3
    with torch.no_grad():
        ref = model.generate(**enc, max_new_tokens=6, do_sample=False, prefill_chunk_size=chunk)
    with tz.compress(model, quiet("snapkv", budget=10_000), chunk_size=chunk):
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_no_layer_ever_holds_more_than_budget_plus_chunk(tiny, family):
    model, _ = tiny(family)
    budget, chunk, n = 24, 16, 120
    method = quiet("snapkv", budget=budget, chunk_size=chunk, window_size=8)
    adapter = KVRuntime(model).adapter
    targets = target_layers(adapter, False)
    during, after = [], []

    def handler(module, query, key, value, mask, kwargs):
        during.append((module.layer_idx, query.shape[2], key.shape[2]))
        return mask

    def watch(runtime, cache):
        after.append([layer_length(layer) for layer in cache.layers])

    with route_attention(model, {m: handler for m in adapter.attention_modules}):
        _, cache, _ = chunked(model, ids_of(n), method, watch)
    sizes = chunk_sizes(n, chunk)
    assert len(after) == len(sizes)
    window = getattr(model.config, "sliding_window", None) or 0
    for i, q, k in during:
        bound = budget if i in targets else window - 1
        assert q <= chunk and k <= bound + q, (i, q, k)
    seen = 0
    for size, lengths in zip(sizes, after):
        seen += size
        for i, stored in enumerate(lengths):
            assert stored == (min(seen, budget) if i in targets else min(seen, window - 1)), (i, seen, lengths)
    if family == "gemma3":
        assert len(targets) < adapter.num_layers  # sliding layers were there, and kept their window
    assert all(layer.get_seq_length() == n for layer in cache.layers)


@pytest.mark.parametrize("name", SCORED)
def test_every_chunkable_method_stays_within_its_bound_on_gemma3(tiny, name):
    model, tok = tiny("gemma3")
    budget, chunk = 30, 20
    method = quiet(name, budget=budget, chunk_size=chunk)
    method.tokenizer = tok if name == "kvzip" else getattr(method, "tokenizer", None)
    targets = target_layers(KVRuntime(model).adapter, False)
    peaks = []
    _, cache, _ = chunked(model, ids_of(150), method,
                          lambda rt, c: peaks.append(max(layer_length(c.layers[i]) for i in targets)))
    assert len(peaks) == len(chunk_sizes(150, chunk))
    # pyramid budgets reach twice the mean; adakv stores its largest head budget (at most heads x budget)
    cap = {"pyramidkv": 2 * budget, "adakv": model.config.num_key_value_heads * budget}.get(name, budget)
    assert max(peaks) <= cap
    assert all(layer_length(cache.layers[i]) <= cap for i in targets)


@pytest.mark.parametrize("family", ["llama", "gemma3", "qwen3"])
def test_later_tokens_get_the_positions_of_the_dense_run(tiny, family):
    """Positions of every chunk and every generated token are those of a dense run, although the cache holds
    only the budget."""
    model, tok = tiny(family)
    enc = tok([TEXT + QUESTION], return_tensors="pt")
    rotary = model.model.rotary_emb
    seen = []
    def record(module, args, kwargs):
        seen.append((args[1] if len(args) > 1 else kwargs["position_ids"])[0].tolist())

    hook = rotary.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=5, do_sample=False)
        dense, seen[:] = list(seen), []
        with tz.compress(model, quiet("snapkv", budget=24), chunk_size=40):
            model.generate(**enc, max_new_tokens=5, do_sample=False)
        chunked_positions = list(seen)
    finally:
        hook.remove()
    flat = [p for call in dict.fromkeys(tuple(c) for c in chunked_positions) for p in call]
    dense_flat = [p for call in dict.fromkeys(tuple(c) for c in dense) for p in call]
    assert flat == dense_flat == list(range(enc.input_ids.shape[1] + 4))


def test_streaming_llm_keeps_the_sinks_and_newest_tokens_at_their_positions(tiny):
    """Layer 0's keys depend only on the token and its position: the chunked cache's must be exactly the dense
    keys of the 4 sinks and the newest tokens."""
    model, _ = tiny("llama")
    ids = ids_of(90)
    _, cache, _ = chunked(model, ids, quiet("streaming_llm", budget=20, chunk_size=16))
    _, ref = dense_in_chunks(model, ids, 90)
    keys, ref_keys = layer_entries(cache.layers[0])[0], layer_entries(ref.layers[0])[0]
    expected = torch.cat([ref_keys[:, :, :4], ref_keys[:, :, -16:]], dim=2)
    assert torch.equal(keys, expected)


def test_attention_scores_are_bounded_by_chunk_times_budget_plus_chunk(tiny, monkeypatch):
    """Every attention call of the model, and the window / received attention the methods compute, stays within
    chunk x (budget + chunk): no N x N tensor (N = 160, chunk 20, budget 24)."""
    import tokenzip.kv.methods.snapkv as snapkv_module
    import tokenzip.kv.runtime as runtime_module

    model, _ = tiny("gemma3")
    n, chunk, budget = 160, 20, 24
    bound = chunk * (budget + chunk)
    sizes = []

    def record(fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            sizes.append(out.shape[-2] * out.shape[-1] if out.ndim == 4 else chunk * out.shape[-1])
            return out
        return wrapped

    monkeypatch.setattr(snapkv_module, "window_attention", record(snapkv_module.window_attention))
    monkeypatch.setattr(runtime_module, "received_attention", record(runtime_module.received_attention))

    def handler(module, query, key, value, mask, kwargs):
        sizes.append(query.shape[2] * key.shape[2])
        return mask

    adapter = KVRuntime(model).adapter
    for name in ("snapkv", "h2o"):
        with route_attention(model, {m: handler for m in adapter.attention_modules}):
            chunked(model, ids_of(n), quiet(name, budget=budget, chunk_size=chunk))
    assert sizes and max(sizes) <= bound < n * n


def test_kvzip_reconstruction_pass_is_bounded_too(tiny):
    model, tok = tiny("llama")
    n, chunk, budget = 150, 25, 30
    method = quiet("kvzip", budget=budget, chunk_size=chunk, tokenizer=tok)
    instruction = tok(method.prompt, add_special_tokens=False, return_tensors="pt").input_ids.shape[1]
    sizes = []

    def handler(module, query, key, value, mask, kwargs):
        sizes.append((query.shape[2], key.shape[2]))
        return mask

    adapter = KVRuntime(model).adapter
    with route_attention(model, {m: handler for m in adapter.attention_modules}):
        chunked(model, ids_of(n), method)
    replays = [(q, k) for q, k in sizes if q > chunk]
    assert replays  # the reconstruction ran after the chunks
    assert max(q for q, _ in sizes) <= chunk + instruction
    assert max(k for _, k in sizes) <= budget + 2 * chunk + instruction


def test_ratio_keeps_kept_of_the_tokens_seen_after_every_chunk(tiny):
    model, _ = tiny("llama")
    method = quiet("knorm", ratio=0.5, chunk_size=20)
    lengths = []
    chunked(model, ids_of(100), method, lambda rt, c: lengths.append(layer_length(c.layers[0])))
    assert lengths == [10, 20, 30, 40, 50]


def test_h2o_carries_the_attention_each_kept_entry_received(tiny):
    model, _ = tiny("llama")
    _, cache, runtime = chunked(model, ids_of(100), quiet("h2o", budget=30, chunk_size=20))
    for i, carried in runtime.carried.items():
        assert carried.shape[-1] == layer_length(cache.layers[i]) == 30
        assert bool((carried > 0).all())
        # attention from 100 queries accumulated over 5 chunks: the kept entries got more than one chunk's worth
        assert float(carried.sum()) > 20


def test_prefill_and_answer_take_chunk_size(tiny):
    model, tok = tiny("llama")
    method = quiet("snapkv", budget=40)
    pre = tz.kv.prefill(model, tok, TEXT, [method], chunk_size=32)
    assert pre.chunk_size == 32 and pre.compress_seconds > 0
    compressed = pre.compress(method)
    assert all(layer_length(layer) == 40 for layer in compressed.cache.layers)
    assert compressed.achieved_ratio == pytest.approx(1 - 40 / pre.n_tokens)
    assert pre.compress(quiet("snapkv", budget=40, chunk_size=32)) is not compressed  # same method: a fresh copy
    with pytest.raises(TokenzipError, match="compressed chunk by chunk"):
        pre.compress(quiet("knorm", budget=40))
    with pytest.raises(TokenzipError, match="one method"):
        tz.kv.prefill(model, tok, TEXT, [method, quiet("knorm", budget=40)], chunk_size=32)
    answers = tz.kv.answer(model, tok, TEXT, [QUESTION, QUESTION], method, chunk_size=32)
    assert answers[0].text == answers[1].text and answers[0].cache_bytes == compressed.bytes
    same = tz.kv.answer(model, tok, TEXT, QUESTION, quiet("snapkv", budget=40, chunk_size=32))[0]
    assert same.text == answers[0].text


def test_methods_that_cannot_chunk_are_refused_up_front(tiny):
    model, _ = tiny("llama")
    with pytest.raises(TokenzipError, match="cannot compress while prefilling in chunks.*snapkv"):
        tz.get_method("kvmerger", budget=10, chunk_size=16)
    with pytest.raises(TokenzipError, match="chunk_size"):
        tz.get_method("snapkv", budget=10, chunk_size=0)
    with pytest.raises(TokenzipError, match="kv method"):
        with tz.compress(model, tz.get_method("layers.random", ratio=0.5), chunk_size=16):
            pass
    with pytest.raises(TokenzipError, match="cannot compress while prefilling"):
        with tz.compress(model, tz.get_method("kivi", bits=4), chunk_size=16):
            pass
    with pytest.raises(TokenzipError, match="give a ratio"):  # a layers budget is for a whole prefill
        with tz.compress(model, tz.get_method("layers.random", budget=8), tz.get_method("snapkv", budget=8),
                         chunk_size=16):
            pass
    assert tz.get_method("adakv", base="snapkv", budget=8, chunk_size=16).supports_chunks()
    with contextlib.suppress(TokenzipError):
        tz.get_method("adakv", base="kvmerger", budget=8, chunk_size=16)
        pytest.fail("adakv over a base that cannot chunk was accepted")


# --- issue 23, item 1: kvzip_fast under chunked prefill ------------------------------------------------------------

KVZIP_FAST = {"self": dict(ratio=0.5), "auto": dict(ratio="auto"), "full": dict(ratio=0.5, replay="full"),
              "full-auto": dict(ratio="auto", replay="full")}


@pytest.mark.parametrize("family", DECODER_FAMILIES)
@pytest.mark.parametrize("variant", list(KVZIP_FAST))
def test_kvzip_fast_compresses_chunk_by_chunk_on_every_family(tiny, family, variant):
    """Chunks of 16 over 100 tokens: it runs (it crashed with "index out of bounds" / "expanded size"), each
    compressed layer keeps kept(seen) after every chunk at a ratio, and auto removes something within its
    ceiling, with the cache counted from the layers themselves."""
    model, tok = tiny(family)
    method = quiet("kvzip_fast", chunk_size=16, tokenizer=tok, **KVZIP_FAST[variant])
    targets = target_layers(KVRuntime(model).adapter, False)
    lengths = []
    _, cache, runtime = chunked(model, ids_of(100), method,
                                lambda rt, c: lengths.append([layer_length(c.layers[i]) for i in targets]))
    seen = 0
    for size, held in zip(chunk_sizes(100, 16), lengths):
        seen += size
        if method.ratio == 0.5:
            assert held == [seen - seen // 2] * len(targets), (seen, held)
        else:
            assert all(seen - int(seen * 0.9) <= h <= seen for h in held), (seen, held)
    final = [layer_length(cache.layers[i]) for i in targets]
    if method.ratio == "auto":
        assert min(final) < 100
        assert sorted(method.chosen_ratios) == targets
        for i in targets:  # the recorded ratio counts the tokens seen, as the cache holds them
            assert method.chosen_ratios[i] == [pytest.approx(1 - final[targets.index(i)] / 100)]


@pytest.mark.filterwarnings("ignore:kvzip_fast. no tokenizer")
@torch.no_grad()
def test_kvzip_fast_self_estimate_is_the_replay_on_the_first_layer_chunk_by_chunk(tiny):
    """Layer 0 sees only embeddings, so re-reading a chunk there is exactly the prefill's queries rotated by Delta:
    the self estimate must equal the real replay's scores after every chunk (no instruction, no BOS, nothing
    dropped). With the old Delta (off by the chunk's start) chunks after the first disagreed."""
    model, _ = tiny("llama")
    ids = ids_of(90, seed=4)  # no BOS: the replay re-reads every token of each chunk
    scores = {}
    for replay in ("self", "full"):
        method = quiet("kvzip_fast", budget=1000, chunk_size=30, replay=replay)
        seen = scores[replay] = []
        original = method.prepare

        def spy(replay_ctx, contexts, original=original, seen=seen):
            original(replay_ctx, contexts)
            seen.append(next(c.extra["kvzip"] for c in contexts if c.layer_idx == 0).clone())

        method.prepare = spy
        chunked(model, ids, method)
    assert len(scores["self"]) == len(scores["full"]) == 3
    for a, b in zip(scores["self"], scores["full"]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spec", [dict(ratio="auto"), dict(ratio=0.5), dict(ratio=0.5, replay="full")])
@pytest.mark.parametrize("name", ["kvzip_fast", "kvzip", "snapkv"])
def test_a_context_that_fits_one_chunk_is_compressed_as_without_chunks(tiny, name, spec):
    """chunk_size >= the context: one chunk, compressed once after it, so exactly the unchunked result (kvzip_fast
    at auto removed nothing; kvzip used per-layer budgets instead of its one top-k over layers)."""
    if name != "kvzip_fast" and (spec.get("ratio") == "auto" or "replay" in spec):
        pytest.skip("auto and replay are kvzip_fast's")
    model, tok = tiny("gemma3")
    plain = tz.kv.prefill(model, tok, TEXT, [quiet(name, **spec)]).compress(quiet(name, **spec))
    one = tz.kv.prefill(model, tok, TEXT, [quiet(name, chunk_size=10_000, **spec)]).compress(
        quiet(name, chunk_size=10_000, **spec))
    assert plain.achieved_ratio > 0 and one.achieved_ratio == plain.achieved_ratio
    for a, b in zip(plain.cache.layers, one.cache.layers):
        assert type(a) is type(b)
        for x, y in zip(layer_entries(a), layer_entries(b)):
            assert torch.equal(x, y)


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_plain_chunked_prefill_holds_the_one_shot_cache_and_answers_the_same(tiny, family):
    """tz.kv.plain_chunked_prefill (the long-context baseline: the same chunks through transformers' own cache,
    nothing evicted): every entry equals the one-shot prefill's up to float rounding (different matmul shapes),
    nothing is removed, and the answers from it are the one-shot prefill's at ratio 0."""
    model, tok = tiny(family)
    pre = tz.kv.plain_chunked_prefill(model, tok, TEXT, chunk_size=32)
    one = tz.kv.prefill(model, tok, TEXT)
    assert pre.n_tokens == one.n_tokens > 3 * 32 and pre.chunk_size == 32
    assert pre.bytes == one.bytes
    for layer, ref in zip(pre.cache.layers, one.cache.layers, strict=True):
        assert layer.get_seq_length() == ref.get_seq_length()
        for a, b in zip(layer_entries(layer), layer_entries(ref), strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    compressed = pre.compress(None)
    assert compressed.achieved_ratio == 0.0 and compressed.bytes == one.bytes
    questions = [QUESTION, "\nQuestion: Where does the cat jump?\nAnswer:"]
    expected = [a.text for a in tz.kv.answer(model, tok, TEXT, questions, None, max_new_tokens=8)]
    assert [tz.kv.answer_from(model, tok, compressed, q, max_new_tokens=8)[0] for q in questions] == expected


def test_plain_chunked_prefill_refuses_bad_input_and_methods(tiny):
    model, tok = tiny("llama")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TokenzipError, match="chunk_size"):
            tz.kv.plain_chunked_prefill(model, tok, TEXT, chunk_size=bad)
    with pytest.raises(TokenzipError, match="empty"):
        tz.kv.plain_chunked_prefill(model, tok, "  ", chunk_size=32)
    pre = tz.kv.plain_chunked_prefill(model, tok, TEXT, chunk_size=32)
    with pytest.raises(TokenzipError, match="prefill again"):  # nothing was captured to compress it by
        pre.compress(quiet("snapkv", ratio=0.5))
