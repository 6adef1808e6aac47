"""The default corpus, corpus files, and the `tokenzip tokenizers` command line."""

from __future__ import annotations

import json

import pytest

from tokenzip.cli import main
from tokenzip.errors import TokenzipError
from tokenzip.tokenizers.corpus import build_default_corpus, corpus_from_files, default_corpus


def test_default_corpus_is_deterministic_and_split_by_file():
    a = build_default_corpus(packages=("tqdm",), max_bytes=20_000, heldout=0.3)
    b = build_default_corpus(packages=("tqdm",), max_bytes=20_000, heldout=0.3)
    assert a.train == b.train and a.heldout == b.heldout
    assert a.train and a.heldout
    assert not set(a.train) & set(a.heldout)  # paragraphs are deduplicated across the split
    assert len(set(a.train)) == len(a.train)
    assert 20_000 <= a.train_bytes + a.heldout_bytes < 20_000 + 5_000  # stops at the first paragraph past the cap
    assert "tqdm" in a.meta["packages"]


def test_default_corpus_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENZIP_CACHE", str(tmp_path))
    first = default_corpus(packages=("tqdm",), max_bytes=20_000)
    assert list((tmp_path / "corpus").glob("default-*.json"))
    again = default_corpus(packages=("tqdm",), max_bytes=20_000)
    assert again.train == first.train and again.description == first.description


def test_default_corpus_missing_packages():
    with pytest.raises(TokenzipError, match="empty"):
        build_default_corpus(packages=("no_such_package_tokenzip",), max_bytes=1000)


def test_corpus_files_hold_out_the_tail(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    corpus = corpus_from_files([path], heldout=0.1)
    assert "".join(corpus.heldout) == "".join(f"line {i}\n" for i in range(90, 100))
    assert "".join(corpus.train).endswith("line 89\n")


def test_corpus_file_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(TokenzipError, match="no text to train on"):
        corpus_from_files([empty])
    with pytest.raises(TokenzipError, match="not UTF-8"):
        corpus_from_files([binary])
    with pytest.raises(TokenzipError, match="does not exist"):
        corpus_from_files([tmp_path / "missing.txt"])
    with pytest.raises(TokenzipError, match="not a file"):
        corpus_from_files([tmp_path])


@pytest.fixture()
def text_file(tmp_path, doc_texts):
    train, _ = doc_texts
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(train), encoding="utf-8")
    return path


def test_cli_train_then_audit(tmp_path, text_file, capsys):
    out = tmp_path / "sb"
    code = main(["tokenizers", "train", "--algo", "superbpe", "--vocab", "800", "--transition", "600",
                 "--out", str(out), "--no-progress", str(text_file)])
    assert code == 0
    assert "superbpe" in capsys.readouterr().out
    report = json.loads((out / "training_report.json").read_text())
    assert report["vocab_size"] == 800 and report["superbpe"]["stage2_merges"] == 200
    assert report["heldout"]["round trip"] == 1.0
    (tmp_path / "en.txt").write_text("the cat sat\nopen the file\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("die Katze saß\nöffne die Datei\n", encoding="utf-8")
    code = main(["tokenizers", "audit", str(out / "tokenizer.json"), "--corpus", str(text_file),
                 "--parallel", str(tmp_path / "en.txt"), str(tmp_path / "de.txt"), "--out", str(tmp_path / "audit")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "token premium vs en" in printed and "de" in printed
    assert (tmp_path / "audit" / "premium.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--algo", "bpe", "--vocab", "100"], "smaller than the alphabet"),
    (["--algo", "superbpe", "--vocab", "1000", "--transition", "5000"], "above the vocabulary size"),
    (["--algo", "bpe", "--vocab", "1000", "--transition", "500"], "does not apply"),
])
def test_cli_train_errors(tmp_path, text_file, capsys, argv, message):
    code = main(["tokenizers", "train", *argv, "--out", str(tmp_path / "o"), str(text_file)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_train_unreadable_corpus(tmp_path, capsys):
    code = main(["tokenizers", "train", "--vocab", "1000", "--out", str(tmp_path / "o"), str(tmp_path / "nope.txt")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_cli_audit_errors(tmp_path, capsys):
    assert main(["tokenizers", "audit", "nonsense-name", "--parallel", "none", "--corpus", __file__]) == 2
    assert "no tokenizer 'nonsense-name'" in capsys.readouterr().err


def test_cli_audit_checks_tokenizer_names_before_reading_any_corpus(monkeypatch, capsys):
    """An unknown name read the 16 MB default corpus and every catalog first (23 s) before saying so."""
    from tokenzip.tokenizers import corpus, parallel

    def never(*args, **kwargs):
        raise AssertionError("a corpus was read before the tokenizer names were checked")

    monkeypatch.setattr(corpus, "default_corpus", never)
    monkeypatch.setattr(corpus, "corpus_from_files", never)
    monkeypatch.setattr(parallel, "from_catalogs", never)
    assert main(["tokenizers", "audit", "gemma-3-270m-typo"]) == 2
    assert "no tokenizer 'gemma-3-270m-typo'" in capsys.readouterr().err


def test_cli_corpus_path_that_is_a_directory_or_not_utf8(tmp_path, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    assert main(["tokenizers", "train", "--vocab", "300", "--out", str(tmp_path / "o"), str(tmp_path)]) == 2
    assert f"corpus file {tmp_path} is a directory, not a file" in capsys.readouterr().err
    assert main(["tokenizers", "train", "--vocab", "300", "--out", str(tmp_path / "o"), str(latin1)]) == 2
    assert "is not UTF-8 text: invalid byte 0xe9 at byte 3 (line 1)" in capsys.readouterr().err


def test_cli_help_without_subcommand(capsys):
    assert main(["tokenizers"]) == 0
    assert "audit" in capsys.readouterr().out
