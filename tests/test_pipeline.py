"""Pipelines: layers and kv composed in either order, exact at ratio 0, counts that chain, refusals up front."""

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.kv.cache import layer_length
from tokenzip.models.cache_layers import cache_bytes, dense_cache_bytes, dense_cache_entries
from tokenzip.models.calling import cache_kwargs, new_cache, output_cache
from tokenzip.testing import DECODER_FAMILIES

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 5
QUESTION = "\nQuestion: What is the special magic number?\nAnswer:"


def _generate(model, enc, *methods):
    """Greedy output and, per forward, the entries each cache layer holds."""
    sizes = []

    def record(module, args, kwargs, output):
        sizes.append([layer_length(layer) for layer in output_cache(output).layers])

    handle = model.register_forward_hook(record, with_kwargs=True)
    try:
        if methods:
            with tz.compress(model, *methods):
                out = model.generate(**enc, max_new_tokens=6, do_sample=False)
        else:
            out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    finally:
        handle.remove()
    return out, sizes


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_layers_and_kv_compose_in_either_order(tiny, family):
    model, tok = tiny(family)
    enc = tok([TEXT + QUESTION, TEXT[40:] + QUESTION], return_tensors="pt", padding=True)
    reference, dense_sizes = _generate(model, enc)
    fastv, snapkv = tz.get_method("fastv", ratio=0.0), tz.get_method("snapkv", ratio=0.0)
    for order in ((fastv, snapkv), (snapkv, fastv)):
        out, sizes = _generate(model, enc, *order)
        assert torch.equal(out, reference), (family, "ratio 0")
        assert sizes == dense_sizes
    fastv, snapkv = tz.get_method("fastv", ratio=0.5), tz.get_method("snapkv", ratio=0.5)
    first, first_sizes = _generate(model, enc, fastv, snapkv)
    second, second_sizes = _generate(model, enc, snapkv, fastv)
    assert torch.equal(first, second) and first_sizes == second_sizes
    prefill = first_sizes[0]
    assert sum(prefill) < sum(dense_sizes[0]) and max(prefill) < max(dense_sizes[0])  # both stages removed entries


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_a_stage_at_ratio_zero_leaves_the_other_alone(tiny, family):
    model, tok = tiny(family)
    enc = tok([TEXT + QUESTION], return_tensors="pt")
    alone, alone_sizes = _generate(model, enc, tz.get_method("fastv", ratio=0.5))
    both, both_sizes = _generate(model, enc, tz.get_method("fastv", ratio=0.5), tz.get_method("snapkv", ratio=0.0))
    assert torch.equal(alone, both) and alone_sizes == both_sizes
    alone, alone_sizes = _generate(model, enc, tz.get_method("snapkv", ratio=0.5))
    both, both_sizes = _generate(model, enc, tz.get_method("snapkv", ratio=0.5), tz.get_method("fastv", ratio=0.0))
    assert torch.equal(alone, both) and alone_sizes == both_sizes


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_dense_cache_figures_equal_a_measured_dense_prefill(tiny, family):
    model, tok = tiny(family)
    ids = tok(TEXT, return_tensors="pt").input_ids
    cache = new_cache(model)
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, **cache_kwargs(model, cache))
    n = ids.shape[1]
    assert dense_cache_entries(model, n) == sum(layer_length(layer) for layer in cache.layers)
    assert dense_cache_bytes(model, n) == cache_bytes(cache)


def test_pipeline_at_ratio_zero_answers_as_the_model(tiny):
    model, tok = tiny("qwen2")
    plain = tz.kv.answer(model, tok, TEXT, QUESTION, None, max_new_tokens=5)[0].text
    result = tz.pipeline("layers:fastv@0.0 | kv:snapkv@0.0").answer(model, tok, TEXT, QUESTION, max_new_tokens=5)
    assert result.answers[0].text == plain
    report = result.report
    assert report.bytes_held == report.dense_bytes and report.entries_held == report.dense_entries
    assert report.compute_saved == 0


@pytest.mark.parametrize("query_aware", [False, True])
def test_stage_counts_chain(tiny, query_aware):
    model, tok = tiny("gemma3")
    pipe = tz.pipeline("prompt:extractive@0.5 | layers:fastv@0.3 | kv:kivi:bits=4,evict=snapkv@0.5",
                       prompt_scorer=(model, tok))
    report = pipe.answer(model, tok, TEXT, [QUESTION], query_aware=query_aware, max_new_tokens=3).report
    prompt, layers, kv = report.stages
    assert [s.stage for s in report.stages] == ["prompt", "layers", "kv"]
    assert prompt.before == len(tok(TEXT).input_ids) and prompt.after < prompt.before
    compressed_text = pipe.compress_text(model, tok, TEXT, QUESTION)[0]
    question_tokens = len(tok(QUESTION, add_special_tokens=False).input_ids) - 1 if query_aware else 0
    assert layers.before == prompt.after + question_tokens == len(tok(compressed_text).input_ids) + question_tokens
    assert layers.after < layers.before
    assert kv.before == layers.entries_after and kv.after == report.entries_held < kv.before
    assert kv.bytes_after == report.bytes_held < layers.bytes_after < report.dense_bytes
    assert report.kv_compression > 1 and 0 < report.compute_saved < 1


def test_refused_before_any_work(tiny):
    model, tok = tiny("llama")

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the prompt scorer was used before the pipeline was checked")

    with pytest.raises(TokenzipError, match="two kv methods.*kivi"):
        tz.pipeline("kv:snapkv@0.5 | kv:knorm@0.5")
    with pytest.raises(TokenzipError, match="layers= expects a layers method"):
        tz.pipeline(layers=tz.get_method("snapkv", ratio=0.5))
    with pytest.raises(TokenzipError, match="either a spec text or"):
        tz.pipeline("kv:snapkv@0.5", kv="knorm")
    pipe = tz.pipeline("prompt:extractive@0.5 | layers:tome@0.5", prompt_scorer=Untouchable())
    with pytest.raises(TokenzipError, match="tome does not support"):
        pipe.answer(model, tok, TEXT, QUESTION)
    bert, _ = tiny("bert")
    with pytest.raises(TokenzipError, match="unsupported model family"):
        tz.pipeline("prompt:extractive@0.5 | kv:snapkv@0.5", prompt_scorer=Untouchable()).answer(bert, tok, TEXT, "q")


def test_generate_reports_each_stage(tiny):
    model, tok = tiny("mistral")
    text, report = tz.pipeline("layers:fastv@0.5 | kv:snapkv@0.5").generate(model, tok, TEXT, QUESTION,
                                                                             max_new_tokens=3)
    assert isinstance(text, str)
    assert [s.stage for s in report.stages] == ["layers", "kv"]
    assert report.bytes_held < report.dense_bytes


@pytest.mark.slow
def test_prompt_and_kv_pipeline_answers_a_needle_on_gemma(gemma):
    from tokenzip.demo import needle_prompt

    model, tok = gemma
    prompt = needle_prompt(tok, 1500, number=739104, seed=3)
    context, question = prompt.split("\nQuestion:")
    pipe = tz.pipeline("prompt:extractive@0.5 | kv:kvzip@0.5", prompt_scorer=(model, tok))
    result = pipe.answer(model, tok, context, "\nQuestion:" + question, max_new_tokens=8)
    assert "739104" in result.answers[0].text
    report = result.report
    prompt_stage, kv = report.stages
    assert prompt_stage.after <= 0.55 * prompt_stage.before and kv.after < kv.before
    # 15 of Gemma 3's 18 layers are sliding-window layers holding 511 entries either way: halving the text and
    # then the 3 global layers' entries leaves ~0.7 of the dense cache at 1.5k tokens
    assert report.kv_compression > 1.3


def test_method_objects_are_kept_and_attached_passes_the_tokenizer_to_kvzip():
    """A method object holding what no spec text can (a tokenizer) is kept as given; ``attached(model, tokenizer=)``
    gives KVzip the tokenizer for its instruction (without one it warns that it re-reads the context bare)."""
    import warnings

    model, tok = tz.testing.tiny_model("llama")
    kvzip = tz.get_method("kvzip", ratio=0.5, tokenizer=tok)
    held = tz.pipeline(kv=kvzip)
    assert held.method("kv") is kvzip and str(held) == "kv:kvzip@0.5"
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    for pipe, tokenizer in ((held, None), (tz.pipeline("kv:kvzip@0.5"), tok)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "no tokenizer given" would raise here
            with pipe.attached(model, tokenizer=tokenizer):
                model.generate(**enc, max_new_tokens=2, do_sample=False)
    with pytest.warns(UserWarning, match="no tokenizer given"), tz.pipeline("kv:kvzip@0.5").attached(model):
        model.generate(**enc, max_new_tokens=2, do_sample=False)


def _entering(model):
    """Hooks recording the tokens entering each decoder layer in every forward pass: ``(counts, remove)``, counts a
    list of per-layer totals (no replay pass here: snapkv makes none)."""
    from tokenzip.models.decoders import DecoderAdapter

    layers = DecoderAdapter(model).decoder.layers
    counts = [0] * len(layers)

    def hook(i):
        def record(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            counts[i] += hidden.shape[1]
        return record

    handles = [layer.register_forward_pre_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    return counts, lambda: [h.remove() for h in handles]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("chunk", [16, 64])
def test_a_chunked_kv_stage_reports_what_each_stage_really_held(tiny, family, chunk):
    """Issue 23, item 2: with a chunked kv stage the layers stage reported its first chunk as the whole prefill and
    the kv stage its compressed cache as its input (removed 0%), and fastv refused chunks of 16 tokens. Every count
    is checked against the tokens each layer really took in (hooks on the layers) and the cache really held."""
    from tokenzip.bench.stages.pipeline import bytes_by_stage
    from tokenzip.kv.runtime import target_layers
    from tokenzip.models.decoders import DecoderAdapter

    model, tok = tiny(family)
    adapter = DecoderAdapter(model)
    counts, remove = _entering(model)
    try:
        compressed, report = tz.pipeline(f"layers:fastv@0.3 | kv:snapkv:chunk_size={chunk}@0.5").run(model, tok, TEXT)
    finally:
        remove()
    n = len(tok(TEXT).input_ids)
    window = adapter.sliding_window()
    took = [min(c, window - 1) if adapter.is_sliding(i) and window else c for i, c in enumerate(counts)]
    layers, kv = report.stages
    assert layers.before == n == counts[0]
    whole = tz.pipeline("layers:fastv@0.3").run(model, tok, TEXT)[1].stages[0]
    assert layers.after == counts[-1] == whole.after < n  # the chunks lost, together, what the whole prefill loses
    assert report.token_layers == sum(counts)
    assert layers.entries_after == kv.before == sum(took) and layers.bytes_after is None
    valid = compressed.masks.valid
    held = [layer_length(layer) if valid.get(i) is None else float(valid[i].float().sum(-1).mean())
            for i, layer in enumerate(compressed.cache.layers)]
    assert kv.after == report.entries_held == sum(held) and kv.bytes_after == cache_bytes(compressed.cache)
    targets = target_layers(adapter, False)
    assert compressed.achieved_ratio == pytest.approx(1 - sum(held[i] for i in targets) / sum(took[i] for i in targets))
    assert 0.45 < compressed.achieved_ratio <= 0.5
    shares = bytes_by_stage(model, report)  # the layers stage is credited with what it removed, the kv stage too
    assert shares["dense"] > shares["layers"] > shares["kv"] == cache_bytes(compressed.cache)


def test_a_chunked_kv_stage_alone_reports_what_it_removed(tiny):
    model, tok = tiny("llama")
    compressed, report = tz.pipeline("kv:snapkv:chunk_size=32@0.5").run(model, tok, TEXT)
    (kv,) = report.stages
    n = len(tok(TEXT).input_ids)
    assert kv.before == report.dense_entries == n * len(compressed.cache.layers)
    assert kv.after == sum(layer_length(layer) for layer in compressed.cache.layers) == (n - n // 2) * 4
    assert kv.removed == pytest.approx(compressed.achieved_ratio) and kv.removed > 0.45


@pytest.mark.parametrize("query_aware", [False, True])
def test_an_empty_context_and_no_new_tokens_are_refused_either_way(tiny, query_aware):
    """Issue 23, item 8: ``answer("")`` was refused query-agnostic but answered query-aware (from the question
    alone), and ``max_new_tokens=-1`` gave an empty answer."""
    model, tok = tiny("llama")
    pipe = tz.pipeline("kv:snapkv@0.5")
    with pytest.raises(TokenzipError, match="the context is empty"):
        pipe.answer(model, tok, "  ", QUESTION, query_aware=query_aware)
    with pytest.raises(TokenzipError, match="the context is empty"):
        tz.kv.answer(model, tok, "", QUESTION, "snapkv", query_aware=query_aware)
    for bad in (0, -1, 2.5):
        with pytest.raises(TokenzipError, match="max_new_tokens .* an integer >= 1"):
            pipe.answer(model, tok, TEXT, QUESTION, query_aware=query_aware, max_new_tokens=bad)
        with pytest.raises(TokenzipError, match="max_new_tokens .* an integer >= 1"):
            tz.kv.answer(model, tok, TEXT, QUESTION, "snapkv", query_aware=query_aware, max_new_tokens=bad)


def test_generate_refuses_no_new_tokens_before_loading_the_model(tmp_path, capsys):
    from tokenzip.cli import main

    context = tmp_path / "ctx.txt"
    context.write_text(TEXT)
    assert main(["generate", "--model", "gemma-3-270m", "--context", str(context), "--question", "Q?",
                 "--max-new-tokens", "-1"]) == 2
    assert "max_new_tokens is the number of tokens to generate, an integer >= 1; got -1" in capsys.readouterr().err


def test_run_is_the_prompt_step_then_compress_context(tiny):
    """``run`` composes ``compress_prompt`` and ``compress_context`` (the steps the server and its page take): the same
    records, cache and text; ``StageRecord.to_dict`` is the report's row form."""
    model, tok = tiny("gemma3")
    pipe = tz.pipeline("prompt:extractive@0.5 | layers:fastv@0.3 | kv:snapkv@0.5", prompt_scorer=(model, tok))
    compressed, report = pipe.run(model, tok, TEXT, QUESTION)
    result, prompt_record = pipe.compress_prompt(model, tok, TEXT, QUESTION)
    assert result.text == pipe.compress_text(model, tok, TEXT, QUESTION)[0] and result.kept_spans
    pre, again, records = pipe.compress_context(model, tok, result.text)
    assert [r.stage for r in records] == ["layers", "kv"] and pre.n_tokens == len(tok(result.text).input_ids)
    rows = [r.to_dict() for r in [prompt_record, *records]]
    keep = ("stage", "method", "unit", "before", "after", "removed", "bytes_after", "entries_after")
    assert [{k: row[k] for k in keep} for row in rows] == [{k: row[k] for k in keep} for row in
                                                          report.to_dict()["stages"]]
    assert set(rows[0]) == set(report.to_dict()["stages"][0]) == {*keep, "seconds"}
    assert again.bytes == compressed.bytes and records[-1].after == report.entries_held
    none_pre, none_compressed, none_records = tz.pipeline("none").compress_context(model, tok, TEXT)
    assert none_records == [] and none_compressed.bytes == none_pre.bytes
