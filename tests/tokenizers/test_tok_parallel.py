"""Parallel text: .mo reading, string cleaning, alignment by msgid, user files, errors."""

from __future__ import annotations

import pytest

from tokenzip.errors import TokenzipError
from tokenzip.tokenizers.catalogs import find_catalogs, normalize_language, read_mo
from tokenzip.tokenizers.clean import clean_ui_string
from tokenzip.tokenizers.parallel import from_catalogs, from_files


@pytest.mark.parametrize("raw, clean", [
    ("%s: cannot open %(name)s for %1$d", ": cannot open for"),
    ("Open {0} in {name}", "Open in"),
    ("<b>Bold</b> &amp; more", "Bold & more"),
    ("_File", "File"),
    ("Sa_ve", "Save"),
    ("保存(_S)", "保存"),
    ("&Open", "Open"),
    ("file_name and x_y", "file_name and x_y"),
    ("100%% done", "100% done"),
    ("%-10.3lf %zu %<PRIu64>", ""),
    ("ctx\x04Hello   world\n", "Hello world"),
    ("{{literal}} braces", "{literal} braces"),
])
def test_clean_ui_string(raw, clean):
    assert clean_ui_string(raw) == clean


def test_normalize_language():
    assert normalize_language("pt-BR") == "pt_BR"
    assert normalize_language("sr@latin") == "sr@latin"
    assert normalize_language("ZH_cn") == "zh_cn"


def test_read_mo_entries(tmp_path, mo_writer):
    entries = {"Hello": "Hallo", "ctx\x04Open": "Öffnen", "One file\x00%d files": "Eine\x00%d", "Untranslated": ""}
    path = mo_writer(tmp_path / "x.mo", entries)
    assert read_mo(path) == {"Hello": "Hallo", "ctx\x04Open": "Öffnen", "One file": "Eine"}


def test_read_mo_latin1(tmp_path, mo_writer):
    path = mo_writer(tmp_path / "x.mo", {"Cafe": "Café"}, charset="ISO-8859-1")
    assert read_mo(path) == {"Cafe": "Café"}


def test_read_mo_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.mo"
    bad.write_bytes(b"this is not a gettext catalog at all")
    with pytest.raises(ValueError, match="not a gettext"):
        read_mo(bad)


def _catalogs(tmp_path, mo_writer):
    root = tmp_path / "locale"
    english = ["Open the file", "Save %s now", "Quit", "Print <b>all</b> pages", "Only German"]
    mo_writer(root / "de/LC_MESSAGES/app.mo", {english[0]: "Datei öffnen", english[1]: "%s jetzt speichern",
                                               english[2]: "Beenden", english[3]: "Alle Seiten drucken",
                                               english[4]: "Nur Deutsch"})
    mo_writer(root / "ja/LC_MESSAGES/app.mo", {english[0]: "ファイルを開く", english[1]: "今すぐ%sを保存",
                                               english[2]: "終了", english[3]: "全ページを印刷"})
    # French translates "Quit" as itself (an untranslated copy): that string cannot be aligned
    mo_writer(root / "fr/LC_MESSAGES/app.mo", {english[0]: "Ouvrir le fichier", english[1]: "Enregistrer %s",
                                               english[2]: "Quit", english[3]: "Imprimer toutes les pages"})
    mo_writer(root / "en_GB/LC_MESSAGES/app.mo", {english[0]: "Open the file, mate"})
    (root / "xx/LC_MESSAGES").mkdir(parents=True)
    (root / "xx/LC_MESSAGES/app.mo").write_bytes(b"garbage")
    return find_catalogs(packages=False, roots=[root])


def test_align_catalogs(tmp_path, mo_writer):
    catalogs = _catalogs(tmp_path, mo_writer)
    assert {c.language for c in catalogs} == {"de", "ja", "fr", "en_GB", "xx"}
    par = from_catalogs(languages=["de", "ja", "fr"], catalogs=catalogs)
    assert par.languages == ["en", "de", "fr", "ja"]
    # "Quit" is dropped (French copy), "Only German" is dropped (not in ja/fr): two strings left
    assert sorted(par.texts["en"]) == ["Open the file", "Print all pages", "Save now"]
    i = par.texts["en"].index("Save now")
    assert par.texts["de"][i] == "jetzt speichern" and par.texts["ja"][i] == "今すぐを保存"
    assert par.texts["de"][par.texts["en"].index("Print all pages")] == "Alle Seiten drucken"
    counts = {r["language"]: r for r in par.counts()}
    assert counts["de"]["kept"] == 3 and counts["de"]["available"] == 5
    assert counts["fr"]["available"] == 3
    assert par.domains == {"system:app": 3}


def test_align_catalogs_greedy_choice(tmp_path, mo_writer):
    par = from_catalogs(count=2, catalogs=_catalogs(tmp_path, mo_writer))
    # de and ja share 4 strings; fr shares only 3 with either
    assert par.languages == ["en", "de", "ja"] and len(par) == 4


def test_alignment_sizes(tmp_path, mo_writer):
    from tokenzip.tokenizers.parallel import alignment_sizes

    rows = alignment_sizes([1, 2, 3], catalogs=_catalogs(tmp_path, mo_writer))
    # de alone: 5 strings; de + ja: 4; de + ja + fr: 3 ("Quit" is a French copy of the source)
    assert [(r["languages"], r["strings"]) for r in rows] == [(1, 5), (2, 4), (3, 3)]


def test_align_catalogs_errors(tmp_path, mo_writer):
    catalogs = _catalogs(tmp_path, mo_writer)
    with pytest.raises(TokenzipError, match="no translated catalog strings for language.*ko"):
        from_catalogs(languages=["de", "ko"], catalogs=catalogs)
    with pytest.raises(TokenzipError, match="no gettext catalogs"):
        from_catalogs(catalogs=[])
    only = tmp_path / "only"
    mo_writer(only / "de/LC_MESSAGES/a.mo", {"Alpha": "Alfa"})
    mo_writer(only / "ja/LC_MESSAGES/a.mo", {"Beta": "ベータ"})
    with pytest.raises(TokenzipError, match="no catalog string in common"):
        from_catalogs(languages=["de", "ja"], catalogs=find_catalogs(packages=False, roots=[only]))


def test_from_files(tmp_path):
    (tmp_path / "en.txt").write_text("one\ntwo\n\nfour\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("eins\nzwei\ndrei\nvier\n", encoding="utf-8")
    par = from_files([tmp_path / "en.txt", tmp_path / "de.txt"])
    assert par.texts == {"en": ["one", "two", "four"], "de": ["eins", "zwei", "vier"]}
    assert par.warnings and "dropped 1" in par.warnings[0]


def test_from_files_errors(tmp_path):
    (tmp_path / "en.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("eins\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("un\ndeux\n", encoding="utf-8")
    (tmp_path / "ja.txt").write_text("一\n二\n", encoding="utf-8")
    (tmp_path / "ko.txt").write_bytes("일\n이\n".encode("utf-16"))
    with pytest.raises(TokenzipError, match="same number of lines"):
        from_files([tmp_path / "en.txt", tmp_path / "de.txt"])
    with pytest.raises(TokenzipError, match="no English file"):
        from_files([tmp_path / "fr.txt", tmp_path / "ja.txt"])
    with pytest.raises(TokenzipError, match="UTF-8"):
        from_files([tmp_path / "en.txt", tmp_path / "ko.txt"])
    with pytest.raises(TokenzipError, match="does not exist"):
        from_files([tmp_path / "en.txt", tmp_path / "nope.txt"])
