"""Audit numbers on a hand-made parallel fixture, computed by hand; tokenizer loading; report files."""

from __future__ import annotations

import json

import pytest

from tokenzip.errors import TokenzipError
from tokenzip.tokenizers.audit import audit
from tokenzip.tokenizers.bpe import alphabet, build_bpe
from tokenzip.tokenizers.load import load_tokenizer
from tokenzip.tokenizers.parallel import from_files


def byte_tokenizer():
    """Byte-level BPE with one merge, 'a' + 't' -> 'at': every other UTF-8 byte is one token."""
    vocab = {c: i for i, c in enumerate(alphabet())}
    vocab["at"] = len(vocab)
    return build_bpe(vocab, [("a", "t")], superwords=False, special_tokens=())


def word_tokenizer():
    """One token per whitespace-separated word (unknown words are [UNK], still one token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "cat": 1, "sat": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


@pytest.fixture()
def parallel(tmp_path):
    (tmp_path / "en.txt").write_text("cat sat\nthe cat\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("chat assis\nle chat\n", encoding="utf-8")
    (tmp_path / "ja.txt").write_text("猫が座った\n猫\n", encoding="utf-8")
    return from_files([tmp_path / "en.txt", tmp_path / "fr.txt", tmp_path / "ja.txt"])


def test_premium_and_fertility_by_hand(parallel):
    result = audit([load_tokenizer(byte_tokenizer(), "bytes"), load_tokenizer(word_tokenizer(), "words")],
                   parallel=parallel, progress=False)
    rows = {(r["tokenizer"], r["language"]): r for r in result.language_rows}
    # bytes tokenizer: "cat sat" = c,at,Ġ,s,at = 5; "the cat" = t,h,e,Ġ,c,at = 6 -> en 11 tokens, 4 words
    #   "chat assis" = c,h,at,Ġ,a,s,s,i,s = 9; "le chat" = l,e,Ġ,c,h,at = 6 -> fr 15 tokens, 4 words
    #   "猫が座った" = 5 chars x 3 bytes = 15; "猫" = 3 -> ja 18 tokens, 2 words
    assert rows["bytes", "en"]["tokens"] == 11
    assert rows["bytes", "fr"]["tokens"] == 15
    assert rows["bytes", "ja"]["tokens"] == 18
    assert rows["bytes", "fr"]["premium"] == pytest.approx(15 / 11)
    assert rows["bytes", "ja"]["premium"] == pytest.approx(18 / 11)
    assert rows["bytes", "en"]["fertility"] == pytest.approx(11 / 4)
    assert rows["bytes", "ja"]["fertility"] == pytest.approx(18 / 2)
    # bytes: en 14 = 7 + 7, fr 17 = 10 + 7, ja 18 = 15 + 3
    assert rows["bytes", "en"]["bytes/token"] == pytest.approx(14 / 11)
    assert rows["bytes", "ja"]["byte premium"] == pytest.approx(18 / 14)
    assert rows["bytes", "fr"]["chars/token"] == pytest.approx(17 / 15)
    # words tokenizer: one token per space-separated word
    assert rows["words", "fr"]["premium"] == pytest.approx(4 / 4)
    assert rows["words", "ja"]["premium"] == pytest.approx(2 / 4)
    assert rows["words", "ja"]["fertility"] == 1.0
    # byte-level BPE decodes exactly; the word tokenizer turns "the" into [UNK] in one English string of two
    assert rows["bytes", "ja"]["round trip"] == 1.0
    assert rows["words", "en"]["round trip"] == 0.5
    # unknown tokens: English "the" is [UNK] (1 of 4 tokens); every French and Japanese word is [UNK]
    assert rows["words", "en"]["unknown share"] == 0.25 and rows["words", "ja"]["unknown share"] == 1.0
    assert rows["bytes", "ja"]["unknown share"] == 0.0
    summary = {r["tokenizer"]: r for r in result.premium_summary()}
    assert summary["words"]["median premium"] == pytest.approx((1.0 + 0.5) / 2)
    assert summary["words"]["max at"] == "fr" and summary["words"]["languages with >1% unknown tokens"] == "fr, ja"
    assert summary["bytes"]["max at"] == "ja" and summary["bytes"]["languages with >1% unknown tokens"] == "none"
    table = {r["language"]: r for r in result.premium_table()}
    assert table["ja"]["bytes"] == pytest.approx(18 / 11) and table["en"]["words"] == 1.0


def test_corpus_metrics_and_vocab_use():
    texts = ["cat sat", "at at"]
    result = audit([load_tokenizer(byte_tokenizer(), "bytes")], corpus=texts, curves=True, progress=False)
    row = result.corpus_rows[0]
    # "cat sat" -> 5 tokens, "at at" -> at,Ġ,at = 3 tokens; distinct ids: c, at, Ġ, s = 4 of 257
    assert row["tokens"] == 8 and row["words"] == 4
    assert row["vocab use"] == pytest.approx(4 / 257)
    assert row["round trip"] == 1.0
    # the merge-list curve: 0 merges -> 12 byte tokens, 1 merge -> 8
    curve = result.curves["bytes"]
    assert curve[-1]["tokens"] == 8 and curve[-1]["vocab_size"] == 257


def test_padding_in_tokenizer_json_is_ignored(tmp_path):
    tok = word_tokenizer()
    tok.enable_padding(length=16)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    loaded = load_tokenizer(str(path))
    assert loaded.encode(["cat sat"]) == [[1, 2]]


def test_load_errors(tmp_path):
    with pytest.raises(TokenzipError, match="no tokenizer 'not-a-tokenizer'"):
        load_tokenizer("not-a-tokenizer")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{}")
    with pytest.raises(TokenzipError, match="not a readable tokenizer.json"):
        load_tokenizer(str(bad))
    with pytest.raises(TokenzipError, match="at least one tokenizer"):
        audit([])
    with pytest.raises(TokenzipError, match="empty"):
        audit([load_tokenizer(byte_tokenizer())], corpus=["", ""])


def test_write_report(tmp_path, parallel):
    from tokenzip.tokenizers.report import write_audit_report

    result = audit([load_tokenizer(byte_tokenizer(), "bytes")], corpus=["cat sat"], parallel=parallel,
                   progress=False)
    written = write_audit_report(result, tmp_path / "r")
    names = {p.name for p in written}
    assert {"audit.json", "audit.md", "premium.png", "bytes_per_token_by_language.png",
            "bytes_per_token_vs_vocab.png"} <= names
    data = json.loads((tmp_path / "r" / "audit.json").read_text())
    assert {r["language"] for r in data["languages"]} == {"en", "fr", "ja"}
    assert "Token premium" in (tmp_path / "r" / "audit.md").read_text()


@pytest.mark.slow
def test_offline_models_tokenizers(parallel):
    result = audit(["gemma-3-270m", "minilm-l6"], corpus=["The cat sat on the mat."], parallel=parallel,
                   curves=True, progress=False)
    rows = {r["tokenizer"]: r for r in result.corpus_rows}
    assert rows["gemma-3-270m"]["vocab"] == 262144 and rows["gemma-3-270m"]["round trip"] == 1.0
    assert rows["minilm-l6"]["model"] == "WordPiece" and rows["minilm-l6"]["round trip"] == 0.0  # lower-cases
    assert "gemma-3-270m" in result.meta["no_curve"]  # SentencePiece-converted merges do not nest
    premiums = {(r["tokenizer"], r["language"]): r["premium"] for r in result.language_rows}
    assert premiums["gemma-3-270m", "en"] == 1.0 and premiums["gemma-3-270m", "ja"] > 0
