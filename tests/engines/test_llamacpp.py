"""The llama.cpp engine on the real GGUFs (Gemma 3 270M: sliding-window + global layers; SmolLM2-135M: 30 full-attention
layers): exact at ratio 0, the cache holds exactly the kept positions, save/restore, chunked prefill in bounded cells,
refusals before any work."""

from __future__ import annotations

import pytest
import torch

import tokenzip as tz
from tokenzip.engines import load_engine
from tokenzip.engines.answer import answer, answer_from
from tokenzip.engines.base import Engine
from tokenzip.errors import TokenzipError
from tokenzip.ops.rope import rotate_half

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing: pip install 'tokenzip[llamacpp]'")

from tokenzip.engines.llamacpp.engine import LlamaCppEngine, llamacpp_methods  # noqa: E402
from tokenzip.engines.llamacpp.gguf import gguf_path  # noqa: E402
from tokenzip.engines.llamacpp.lib import LlamaContext  # noqa: E402

pytestmark = pytest.mark.slow

DOC = ("The special magic number is 482913. " + "The cat jumps over the lazy dog near the river bank. " * 22
       + "Remember the number well. ")
QUESTION = "\nQuestion: What is the special magic number?\nAnswer:"


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma-3-270m"])
def engine(request):
    try:
        path = gguf_path(request.param)
    except ImportError as exc:
        pytest.skip(str(exc))
    e = LlamaCppEngine(path, threads=1)
    yield e
    e.close()


@pytest.fixture(scope="module")
def smollm2_engine():
    try:
        path = gguf_path("smollm2-135m")
    except ImportError as exc:
        pytest.skip(str(exc))
    e = LlamaCppEngine(path, threads=1)
    yield e
    e.close()


def plain_llama_cpp(path, context_ids, question_ids, max_new_tokens):
    """Greedy tokens from llama-cpp-python's own ``Llama`` object: the context, then the question, then its loop."""
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_batch=512, n_threads=1, n_threads_batch=1,
                          verbose=False)
    llm.eval(context_ids)
    llm.eval(question_ids)
    out = []
    for _ in range(max_new_tokens):
        token = llm.sample(temp=0.0)
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        out.append(token)
        llm.eval([token])
    return out


def test_ratio_0_is_exactly_plain_llama_cpp(engine):
    assert isinstance(engine, Engine) and tz.engines.load_engine is load_engine
    context_ids, question_ids = engine.tokenize(DOC, True), engine.tokenize(QUESTION, False)
    expected = plain_llama_cpp(engine.model.path, context_ids, question_ids, 10)
    pre = engine.prefill(DOC, [tz.get_method("snapkv", ratio=0.5)])
    for method in (None, tz.get_method("snapkv", ratio=0.0)):
        compressed = engine.compress(pre, method)
        assert compressed.kept == pre.n_tokens
        assert list(engine.generate(compressed, question_ids, 10)) == expected
    assert len(expected) == 10  # ten tokens compared, none an end of generation


def visible(positions, engine, last):
    """What llama.cpp's position queries see of ``positions`` just restored with ``last`` the newest: all of them, or
    for a model with sliding-window layers, those of its sliding-window cache (the newest ``n_swa``)."""
    n_swa = engine.model.n_swa
    return [p for p in positions if not n_swa or p > last - n_swa]


def test_eviction_leaves_exactly_the_kept_positions_and_questions_continue_at_the_original_ones(engine):
    methods = [tz.get_method(name, ratio=0.5) for name in ("snapkv", "compactor", "kvzip", "streaming_llm")]
    pre = engine.prefill(DOC * 2, methods)
    n = pre.n_tokens
    for method in methods:
        compressed = engine.compress(pre, method)
        kept = compressed.state.positions
        assert len(kept) == n - int(n * 0.5) == compressed.kept and kept[-1] == n - 1
        ctx = engine.context(1)
        ctx.load(compressed.state.data)
        # llama.cpp's own position queries, position by position
        assert ctx.held_positions(n + 8) == visible(kept, engine, n - 1)
        assert ctx.pos_max() == n - 1
        question = engine.tokenize(QUESTION, False)
        next(engine.generate(compressed, question, 2))  # the question decoded at n, n + 1, ...
        asked = list(range(n, n + len(question)))
        held = ctx.held_positions(asked[-1] + 2)
        assert held[-len(asked):] == asked and set(held[: -len(asked)]) <= set(kept)
        if not engine.model.n_swa:  # (a sliding-window cache drops the cells that left its window when it likes)
            assert held == kept + asked
    streaming = engine.compress(pre, tz.get_method("streaming_llm", ratio=0.5, sinks=4))
    assert streaming.state.positions == list(range(4)) + list(range(n - (len(streaming.state.positions) - 4), n))


def test_every_llama_cpp_method_runs_and_keeps_its_budget(smollm2_engine):
    engine = smollm2_engine
    methods = [tz.get_method(name, stage="kv", budget=64) for name in llamacpp_methods()]
    pre = engine.prefill(DOC, methods)
    for method in methods:
        compressed = engine.compress(pre, method)
        assert compressed.kept == 64 and len(set(compressed.state.positions)) == 64, method.name
        assert compressed.bytes < pre.bytes / 2


def test_scores_come_from_llama_cpp_tensors_in_the_pytorch_layout(engine):
    """Layer 0's keys of the same tokens at positions shifted by 300 are the same keys rotated 300 positions further:
    the tensors read through cb_eval, rearranged to rotate-half, and the engine's RoPE agree with llama.cpp's."""
    ids = engine.tokenize(DOC, True)[:40]
    ctx = engine.context(512)
    got = []
    for start in (0, 300):
        ctx.clear()
        with engine.reader.reading([0], 1 << 30) as read:
            ctx.decode(ids, start, logits="none")
        got.append(read)
    keys, shifted = got[0]["keys"][0], got[1]["keys"][0]
    assert keys.shape == (1, engine.layout.n_head_kv, 40, engine.layout.head_dim)
    assert got[0]["queries"][0].shape == (1, engine.layout.n_head, 40, engine.layout.head_dim)
    cos, sin = engine.layout.rotary(0, torch.tensor([[300]]), keys)
    rotated = keys * cos[:, None] + rotate_half(keys) * sin[:, None]
    assert (rotated - shifted).abs().max() < 1e-3 * shifted.abs().max()
    assert (keys - shifted).abs().max() > 0.1 * shifted.abs().max()


def test_save_then_restore_gives_the_same_continuation(engine):
    pre = engine.prefill(DOC, [tz.get_method("kvzip", ratio=0.5)])
    compressed = engine.compress(pre, tz.get_method("kvzip", ratio=0.5))
    first = answer_from(engine, compressed, QUESTION, 8)
    data = engine.save(compressed)
    again = LlamaCppEngine(engine.model.path, threads=1)
    try:
        restored = again.restore(data)
        assert (restored.n_tokens, restored.kept) == (compressed.n_tokens, compressed.kept)
        assert answer_from(again, restored, QUESTION, 8).text == first.text
        assert answer_from(engine, compressed, QUESTION, 8).text == first.text  # the same context every question
    finally:
        again.close()
    with pytest.raises(TokenzipError, match="not a compressed context"):
        engine.restore(b"junk")


def test_chunked_prefill_holds_at_most_budget_plus_chunk_and_reads_past_n_ctx(smollm2_engine, monkeypatch):
    long_doc = DOC * 5  # about 1,500 tokens
    engine = LlamaCppEngine(smollm2_engine.model.path, n_ctx=768, threads=1)
    held = []
    decode = LlamaContext.decode

    def counting(self, tokens, start, logits="last", seq=0):
        decode(self, tokens, start, logits, seq)
        if seq == 0 and logits == "none" and len(tokens) > 1:  # a chunk of the context (not a replay: seq ids)
            held.append(len(self.held_positions(start + len(tokens))))

    monkeypatch.setattr(LlamaContext, "decode", counting)
    method = tz.get_method("snapkv", budget=256)
    n = len(engine.tokenize(long_doc, True))
    assert n > 768
    with pytest.raises(TokenzipError, match="n_ctx"):
        engine.prefill(long_doc, [method])  # the whole document does not fit
    pre = engine.prefill(long_doc, [method], chunk_size=256)
    monkeypatch.setattr(LlamaContext, "decode", decode)
    assert pre.n_tokens == n and len(held) == -(-n // 256)
    assert max(held) <= 256 + 256 and pre.peak_entries == max(held)
    compressed = engine.compress(pre, method)
    assert compressed.kept == 256 and compressed.state.positions[-1] == n - 1
    assert answer_from(engine, compressed, QUESTION, 6).new_tokens >= 1
    with pytest.raises(TokenzipError, match="chunk by chunk"):
        engine.compress(pre, tz.get_method("snapkv", budget=128))
    engine.close()


def test_kvzip_chunked_in_llama_cpp(smollm2_engine):
    method = tz.get_method("kvzip", budget=128, chunk_size=128)
    got = answer(smollm2_engine, DOC, QUESTION, method, max_new_tokens=6)[0]
    assert got.chunk_size == 128 and got.achieved_ratio > 0.5 and got.engine == "llamacpp"


@pytest.mark.parametrize("name, params", [("adakv", {"ratio": 0.5}), ("pyramidkv", {"ratio": 0.5}),
                                          ("kivi", {"ratio": 0.5, "evict": "snapkv"}),
                                          ("compactor", {"ratio": "auto"})])
def test_a_method_llama_cpp_cannot_run_is_refused_before_any_work(name, params):
    engine = LlamaCppEngine(gguf_path("smollm2-135m"), threads=1)
    method = tz.get_method(name, **params)
    with pytest.raises(TokenzipError, match="cannot run in llama.cpp") as err:
        engine.prefill(DOC, [method])
    assert "methods that can: " in str(err.value) and "kvzip" in str(err.value)
    with pytest.raises(TokenzipError, match="cannot run in llama.cpp"):
        answer(engine, DOC, QUESTION, method)
    assert engine._ctx is None  # no llama.cpp context was even created
    engine.close()


def test_a_method_that_cannot_chunk_is_refused_with_a_chunk_size(smollm2_engine):
    with pytest.raises(TokenzipError, match="cannot compress while prefilling in chunks"):
        smollm2_engine.prefill(DOC, [tz.get_method("compactor", ratio=0.5)], chunk_size=128)


def test_the_prefill_refuses_what_tz_kv_prefill_refuses(smollm2_engine):
    with pytest.raises(TokenzipError, match="give it once"):  # the method's own chunk size and another one
        smollm2_engine.prefill(DOC, [tz.get_method("snapkv", budget=64, chunk_size=128)], chunk_size=256)
    with pytest.raises(TokenzipError, match="with one method"):
        smollm2_engine.prefill(DOC, ["snapkv", "knorm"], chunk_size=128)
    for empty in ("  \n", []):
        with pytest.raises(TokenzipError, match="the context is empty"):
            smollm2_engine.prefill(empty, ["snapkv"])
