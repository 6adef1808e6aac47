"""Training BPE / Unigram / SuperBPE: determinism, exact round trip, stock loading, bad arguments."""

from __future__ import annotations

import pytest

from tokenzip.errors import TokenzipError
from tokenzip.tokenizers.train import check_arguments, evaluate, save, train_tokenizer


@pytest.mark.parametrize("algo", ["bpe", "superbpe"])
def test_training_is_deterministic(doc_texts, algo):
    train, _ = doc_texts
    kwargs = {"transition": 500} if algo == "superbpe" else {}
    a = train_tokenizer(train, algo, 900, progress=False, **kwargs).tokenizer
    b = train_tokenizer(train, algo, 900, progress=False, **kwargs).tokenizer
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() == 900


@pytest.mark.parametrize("algo", ["bpe", "unigram", "superbpe"])
def test_round_trip_exact_on_held_out(doc_texts, algo):
    train, heldout = doc_texts
    trained = train_tokenizer(train, algo, 800, progress=False)
    tok = trained.tokenizer
    for text in heldout:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == text
    report = evaluate(trained, heldout)
    assert report["heldout"]["round trip"] == 1.0


def test_output_loads_in_stock_tokenizers_and_transformers(tmp_path, superbpe_small, doc_texts, hard_texts):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok, _ = superbpe_small
    _, heldout = doc_texts
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    stock = Tokenizer.from_file(str(path))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    for text in heldout[:50] + hard_texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert stock.encode(text, add_special_tokens=False).ids == ids
        assert fast(text, add_special_tokens=False)["input_ids"] == ids
        assert fast.decode(ids, clean_up_tokenization_spaces=False) == text


def test_save_writes_tokenizer_and_reports(tmp_path, doc_texts):
    from tokenzip.tokenizers.corpus import Corpus

    train, heldout = doc_texts
    trained = train_tokenizer(train, "superbpe", 700, transition=500, progress=False)
    corpus = Corpus(train, heldout, "test corpus")
    report = save(trained, tmp_path / "out", corpus, evaluate(trained, heldout), "cmd")
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert (tmp_path / "out" / "training_report.json").is_file()
    assert "SuperBPE stages" in (tmp_path / "out" / "training_report.md").read_text()
    curve = report["curve"]
    assert curve[-1]["vocab_size"] == 700 and any(r["vocab_size"] == 500 for r in curve)
    # more merges never need more tokens on this text
    tokens = [r["tokens"] for r in curve]
    assert tokens == sorted(tokens, reverse=True)


def test_vocabulary_smaller_than_alphabet():
    with pytest.raises(TokenzipError, match="smaller than the alphabet.*257"):
        check_arguments("bpe", 200, None)


def test_transition_above_vocabulary():
    with pytest.raises(TokenzipError, match="above the vocabulary size"):
        check_arguments("superbpe", 1000, 2000)


def test_transition_only_for_superbpe():
    with pytest.raises(TokenzipError, match="does not apply to bpe"):
        check_arguments("bpe", 1000, 500)


def test_transition_equal_to_vocab_warns():
    transition, warnings = check_arguments("superbpe", 1000, 1000)
    assert transition == 1000 and "plain BPE" in warnings[0]


def test_default_transition_is_half():
    assert check_arguments("superbpe", 32000, None)[0] == 16000


def test_unknown_algorithm():
    with pytest.raises(TokenzipError, match="superbpe"):
        check_arguments("superbep", 1000, None)


def test_empty_corpus():
    with pytest.raises(TokenzipError, match="empty"):
        train_tokenizer(["", "  \n"], "bpe", 500, progress=False)


def test_too_small_corpus_warns():
    trained = train_tokenizer(["tiny text, tiny text"], "bpe", 5000, progress=False)
    assert trained.vocab_size < 5000
    assert any("too small" in w for w in trained.warnings)
