"""SuperBPE: the merge learner on hand-built cases, the constraints, and stock inference = training order."""

from __future__ import annotations

import json

from tokenzip.tokenizers.bpe import bpe_state, train_bpe, truncated
from tokenzip.tokenizers.pretokenize import splitter, token_bytes
from tokenzip.tokenizers.replay import check_against_stock
from tokenzip.tokenizers.superbpe import learn_merges, superword_allowed, superword_veto, words_in


def test_words_in():
    assert words_in(b"the") == 1
    assert words_in(b" of the") == 2
    assert words_in(b", and") == 2
    assert words_in(b"a b c d") == 4
    assert words_in(b" a b c d e") == 5
    assert words_in(b" ") == 0


def test_allowed():
    assert superword_allowed(b" in the end of")
    assert not superword_allowed(b" in the end of it")
    assert not superword_allowed(b"note: the")
    assert superword_veto(b" a b c", max_words=2) == "words"
    assert superword_veto(b"a: b", max_words=2) == "forbidden"
    assert superword_veto(b" a b", max_words=2) is None


def _vocab(*tokens: bytes) -> list[bytes]:
    return list(tokens)


def test_learn_merges_most_frequent_first_with_counts():
    # ids: 0='a' 1='b' 2='c'; sequences with counts: "ab" x5, "abc" x2, "bc" x3
    vocab = _vocab(b"a", b"b", b"c")
    seqs = [[0, 1], [0, 1, 2], [1, 2]]
    counts = [5, 2, 3]
    log = learn_merges(seqs, counts, vocab, target_size=5, veto=lambda t: None, progress=False)
    # pair counts: ab = 5 + 2 = 7, bc = 2 + 3 = 5 -> merge ab first (id 3)
    # then: "ab c" gives (ab, c) = 2, "bc" = 3 -> merge bc (id 4)
    assert log.merges == [(0, 1), (1, 2)]
    assert vocab[3:] == [b"ab", b"bc"]
    assert seqs == [[3], [3, 2], [4]]
    assert log.last_count == 3


def test_learn_merges_vetoes_colon_space_and_five_words():
    # symbols: 0='x:' 1=' y' (a colon-space pair) and five words repeated often
    vocab = _vocab(b"x:", b" y", b"w1", b" w2", b" w3", b" w4", b" w5")
    seqs = [[0, 1], [2, 3, 4, 5, 6]]
    counts = [100, 50]
    log = learn_merges(seqs, counts, vocab, target_size=len(vocab) + 10, veto=superword_veto, progress=False)
    made = vocab[7:]
    assert b"x: y" not in made and log.vetoed_forbidden == 1
    assert all(words_in(t) <= 4 for t in made)
    assert log.vetoed_words >= 1
    assert any(words_in(t) == 4 for t in made)


def test_learn_merges_stops_below_min_count():
    vocab = _vocab(b"a", b"b")
    log = learn_merges([[0, 1]], [1], vocab, target_size=10, veto=lambda t: None, progress=False)
    assert log.merges == []
    assert "twice" in log.stopped or "2 times" in log.stopped


def test_trained_tokens_respect_constraints(superbpe_small):
    tok, info = superbpe_small
    vocab, merges = bpe_state(tok)
    stage2 = [token_bytes(a) + token_bytes(b) for a, b in merges[info["stage1_merges"]:]]
    assert info["stage2_merges"] == len(stage2) == 1500 - 700
    assert all(words_in(t) <= 4 for t in stage2)
    assert not any(b": " in t for t in stage2)
    assert not any(b"\n" in t and t.strip() for t in stage2)  # newlines only inside whitespace runs
    assert sum(words_in(t) >= 2 for t in stage2) > 50  # it does learn superwords
    for token in vocab:
        if token != "<|endoftext|>":
            assert words_in(token_bytes(token)) <= 4 and b": " not in token_bytes(token)


def test_stock_encoding_reproduces_training_order(superbpe_small, doc_texts):
    tok, info = superbpe_small
    _, heldout = doc_texts
    texts = [t for t in heldout if "<|endoftext|>" not in t]
    check = check_against_stock(tok, texts, info["stage1_merges"])
    assert check["texts_differing"] == 0, check["first_difference"]
    assert check["tokens"] > 1000


def test_cut_at_transition_is_plain_bpe(superbpe_small, doc_texts):
    """Nesting: the SuperBPE merge list cut at the transition point segments like stage-1 BPE."""
    tok, info = superbpe_small
    train, heldout = doc_texts
    bpe = train_bpe(train, 700, progress=False)
    cut = truncated(tok, info["stage1_merges"])
    for text in heldout[:100]:
        assert cut.encode(text).ids == bpe.encode(text).ids


def test_pieces_are_unions_of_subword_pieces(doc_texts):
    _, heldout = doc_texts
    sub, sup = splitter(False), splitter(True)
    for text in heldout:
        inner = {o for _, span in sub.pre_tokenize_str(text) for o in span}
        outer = sup.pre_tokenize_str(text)
        assert "".join(p for p, _ in outer) == text
        assert {o for _, span in outer for o in span} <= inner
        assert not any(": " in p or (p.strip(" ") and "\n" in p and p.strip()) for p, _ in outer if len(p.split()) > 1)


def test_pretokenizer_serialized_as_regex_split(superbpe_small):
    tok, _ = superbpe_small
    pre = json.loads(tok.to_str())["pre_tokenizer"]
    assert pre["type"] == "Sequence"
    assert [p["type"] for p in pre["pretokenizers"]] == ["Split", "ByteLevel"]


def test_piece_table_stays_bounded():
    from tokenzip.tokenizers.superbpe import PieceTable

    table = PieceTable(max_types=4)
    table.add(["a", "a", "a", "b", "b", "c", "d"])
    assert table.counts == {"a": 3, "b": 2, "c": 1, "d": 1} and table.dropped_types == 0
    table.add(["e"])  # fifth type: the least frequent half is dropped, ties broken by the piece
    assert table.counts == {"a": 3, "b": 2}
    assert table.dropped_types == 3 and table.dropped_occurrences == 3
    assert table.total_occurrences == 8


def test_full_piece_table_is_reported(doc_texts):
    from tokenzip.tokenizers.train import train_tokenizer

    train, _ = doc_texts
    trained = train_tokenizer(train, "superbpe", 700, transition=500, progress=False, max_piece_types=2000)
    assert trained.info["dropped_piece_occurrences"] > 0
    assert any("piece table was full" in w for w in trained.warnings)


def test_max_words_is_configurable(doc_texts):
    from tokenzip.tokenizers.superbpe import train_superbpe

    train, _ = doc_texts
    tok, info = train_superbpe(train, vocab_size=1000, transition=600, max_words=2, progress=False)
    vocab, _ = bpe_state(tok)
    assert max(words_in(token_bytes(t)) for t in vocab if t != "<|endoftext|>") == 2
    assert info["vetoed_over_max_words"] > 0 and info["max_words"] == 2
