"""The torch engine is tz.kv behind the engine protocol: the same answers, bytes that restore the same context."""

import pytest

import tokenzip as tz
from tokenzip.engines import ENGINES, load_engine
from tokenzip.engines.answer import answer, answer_from
from tokenzip.engines.base import Engine
from tokenzip.engines.torch import TorchEngine
from tokenzip.errors import TokenzipError

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4
QUESTIONS = ["\nQuestion: What is the special magic number?\nAnswer:", "\nQuestion: Who jumps?\nAnswer:"]


@pytest.fixture
def engine(tiny):
    return TorchEngine(*tiny("llama"))


def test_the_engine_protocol_is_met(engine):
    assert isinstance(engine, Engine) and ENGINES == ("torch", "llamacpp")


@pytest.mark.parametrize("method, query_aware", [(None, False), ("snapkv", False), ("kvzip", False),
                                                 ("snapkv", True)])
def test_answers_equal_tz_kv_answer(engine, method, query_aware):
    build = (lambda: tz.get_method(method, ratio=0.5)) if method else (lambda: None)
    got = answer(engine, TEXT, QUESTIONS, build(), max_new_tokens=6, query_aware=query_aware)
    expected = tz.kv.answer(engine.model, engine.tokenizer, TEXT, QUESTIONS, build(), max_new_tokens=6,
                            query_aware=query_aware)
    assert [a.text for a in got] == [a.text for a in expected]
    assert [a.achieved_ratio for a in got] == pytest.approx([a.achieved_ratio for a in expected])
    assert all(a.engine == "torch" and 0 < a.first_token_seconds <= a.decode_seconds for a in got if a.new_tokens)


def test_chunked_answers_equal_tz_kv_answer(engine):
    method = tz.get_method("snapkv", budget=24, window_size=8)
    got = answer(engine, TEXT, QUESTIONS[0], method, max_new_tokens=6, chunk_size=16)[0]
    expected = tz.kv.answer(engine.model, engine.tokenizer, TEXT, QUESTIONS[0], method, max_new_tokens=6,
                            chunk_size=16)[0]
    assert got.text == expected.text and got.chunk_size == 16


def test_save_restore_gives_the_same_answer(engine):
    pre = engine.prefill(TEXT, [tz.get_method("snapkv", ratio=0.5)])
    compressed = engine.compress(pre, tz.get_method("snapkv", ratio=0.5))
    restored = engine.restore(engine.save(compressed))
    assert (restored.n_tokens, restored.kept, restored.bytes) == (compressed.n_tokens, compressed.kept,
                                                                   compressed.bytes)
    assert answer_from(engine, restored, QUESTIONS[0], 6).text == answer_from(engine, compressed, QUESTIONS[0], 6).text
    with pytest.raises(TokenzipError, match="not a compressed context"):
        engine.restore(b"junk")


def test_nll_is_the_teacher_forced_loss(engine):
    pre = engine.prefill(TEXT)
    dense = engine.compress(pre, None)
    nll, scored = engine.nll(dense, " The cat jumps over the lazy dog.")
    assert scored == len(engine.tokenize(" The cat jumps over the lazy dog.")) - 1 and nll > 0


def test_load_engine_refuses_unknown_names():
    with pytest.raises(TokenzipError, match="unknown engine 'vllm'"):
        load_engine("vllm")


def test_hold_makes_a_kv_compressed_cache_the_engines_own(engine):
    """``hold`` (what the server uses on a pipeline's kv stage) gives what ``compress`` gives: the same counts, bytes
    and answer."""
    method = tz.get_method("snapkv", ratio=0.5)
    pre = engine.prefill(TEXT, [method])
    compressed = engine.compress(pre, method)
    held = engine.hold(pre.state.compress(method))
    assert (held.n_tokens, held.kept, held.bytes, held.label) == (compressed.n_tokens, compressed.kept,
                                                                  compressed.bytes, compressed.label)
    assert held.kept < held.n_tokens
    assert answer_from(engine, held, QUESTIONS[0], 6).text == answer_from(engine, compressed, QUESTIONS[0], 6).text


def test_generation_past_the_models_positions_is_refused(engine):
    """The limit is the decoder adapter's (``max_positions``, read from the text config), checked before any token."""
    dense = engine.compress(engine.prefill(TEXT), None)
    with pytest.raises(TokenzipError, match="exceed the model's 4096 positions"):
        answer_from(engine, dense, QUESTIONS[0], 4096)
