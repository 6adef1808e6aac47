"""Parallel text for token premiums: translation catalogs aligned by source string, or user files.

The token premium of a language (Petrov et al., 2023, "Language Model Tokenizers Introduce
Unfairness Between Languages", arXiv 2305.15425) is tokens(language) / tokens(English) on text
that says the same thing. This module builds such text offline:

* ``from_catalogs``: gettext catalogs found on the machine (see ``catalogs.py``) are aligned by
  their source string (``msgid``, English); placeholders, markup and accelerators are stripped;
  only strings translated in *every* selected language are kept, so each language's total counts
  the same content. Translations equal to the English source are treated as untranslated.
* ``from_files``: one UTF-8 file per language, aligned by line (FLORES-200 style).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tokenzip.errors import TokenzipError
from tokenzip.textio import read_text
from tokenzip.tokenizers.catalogs import Catalog, find_catalogs, normalize_language, read_mo
from tokenzip.tokenizers.clean import clean_ui_string

log = logging.getLogger(__name__)

REFERENCE = "en"


@dataclass
class ParallelText:
    """Aligned strings: ``texts[lang][i]`` translates ``texts[reference][i]``."""

    texts: dict[str, list[str]]
    reference: str = REFERENCE
    source: str = ""
    available: dict[str, int] = field(default_factory=dict)  # strings each language had before alignment
    warnings: list[str] = field(default_factory=list)
    domains: dict[str, int] = field(default_factory=dict)  # catalogs: strings kept per (source:domain)

    @property
    def languages(self) -> list[str]:
        """The reference first, then the others sorted."""
        return [self.reference] + sorted(k for k in self.texts if k != self.reference)

    def __len__(self) -> int:
        return len(self.texts[self.reference])

    def counts(self) -> list[dict[str, object]]:
        """Per language: strings kept (the same for all), characters and bytes kept, strings available."""
        return [
            {
                "language": lang,
                "kept": len(self.texts[lang]),
                "available": self.available.get(lang, len(self.texts[lang])),
                "chars": sum(len(t) for t in self.texts[lang]),
                "bytes": sum(len(t.encode("utf-8")) for t in self.texts[lang]),
            }
            for lang in self.languages
        ]


def _is_reference(lang: str, reference: str) -> bool:
    return lang == reference or lang.split("_")[0].split("@")[0] == reference


def _base(lang: str) -> str:
    return lang.split("_")[0].split("@")[0]


def _read_catalog_table(catalogs: Sequence[Catalog], reference: str) -> tuple[dict[str, str], dict]:
    """{English text: catalog it was first found in} and {lang: {English text: translation}}.

    Strings are aligned by their cleaned source text, so a string shipped by several catalogs (or two
    msgids that differ only in placeholders) counts once; the first catalog in sorted order gives its
    translation.
    """
    origin: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    by_lang: dict[str, dict[str, str]] = {}
    for cat in tqdm(catalogs, desc="reading catalogs", unit="file", disable=len(catalogs) < 200):
        if _is_reference(cat.language, reference):
            continue  # English variants (en_GB, en@quot) re-spell the source; the source itself is the reference
        try:
            entries = read_mo(cat.path)
        except (OSError, ValueError) as exc:
            log.warning("tokenzip: skipping unreadable catalog %s: %s", cat.path, exc)
            continue
        table = by_lang.setdefault(cat.language, {})
        for msgid, msgstr in entries.items():
            english = cleaned.get(msgid)
            if english is None:
                english = cleaned[msgid] = clean_ui_string(msgid)
            if not english:
                continue
            origin.setdefault(english, f"{cat.source}:{cat.domain}")
            if english in table:
                continue
            text = clean_ui_string(msgstr)
            if text and text != english:
                table[english] = text
    return origin, by_lang


def _select_languages(by_lang: dict[str, dict], count: int, distinct_base: bool) -> list[str]:
    """Greedy: repeatedly add the language that keeps the most strings common to all chosen so far."""
    chosen: list[str] = []
    common: set | None = None
    candidates = sorted(by_lang)
    bases: set[str] = set()
    while len(chosen) < count:
        best, best_keys = None, None
        for lang in candidates:
            if lang in chosen or (distinct_base and _base(lang) in bases):
                continue
            keys = set(by_lang[lang]) if common is None else common.intersection(by_lang[lang])
            if best_keys is None or len(keys) > len(best_keys):
                best, best_keys = lang, keys
        if best is None or not best_keys:
            break
        chosen.append(best)
        bases.add(_base(best))
        common = best_keys
    return sorted(chosen)


def from_catalogs(
    languages: Sequence[str] | None = None,
    count: int = 40,
    catalogs: Sequence[Catalog] | None = None,
    reference: str = REFERENCE,
    distinct_base: bool = True,
) -> ParallelText:
    """Align the translation catalogs on this machine by source string.

    ``languages``: locale codes to keep (e.g. ``["de", "ja", "pt_BR"]``); by default the ``count``
    languages chosen greedily so that the most strings stay common to all of them (one variant per
    base language when ``distinct_base``). Only strings translated in every selected language are
    kept. A requested language without catalogs, or one that leaves no common string, raises
    ``TokenzipError``.
    """
    catalogs = list(catalogs) if catalogs is not None else find_catalogs()
    if not catalogs:
        raise TokenzipError(
            "no gettext catalogs (.mo files) found on this machine (looked in /usr/share/locale and the installed "
            "Python packages). Install some (e.g. `pip install django`) or pass parallel files, one per language "
            "and aligned by line: --parallel en.txt de.txt ..."
        )
    origin, by_lang = _read_catalog_table(catalogs, reference)
    warnings: list[str] = []
    if languages:
        wanted = [normalize_language(lang) for lang in languages]
        wanted = [lang for lang in wanted if not _is_reference(lang, reference)]
        missing = [lang for lang in wanted if not by_lang.get(lang)]
        if missing:
            known = ", ".join(sorted(k for k, v in by_lang.items() if v))
            raise TokenzipError(f"no translated catalog strings for language(s) {', '.join(missing)}. Known: {known}")
        chosen = sorted(set(wanted))
    else:
        chosen = _select_languages(by_lang, count, distinct_base)
    common = set(origin) if not chosen else set.intersection(*(set(by_lang[lang]) for lang in chosen))
    if not common:
        raise TokenzipError(
            f"the languages {', '.join(chosen)} have no catalog string in common; choose fewer languages "
            "(--languages) or give parallel files"
        )
    if len(chosen) < count and not languages:
        warnings.append(f"only {len(chosen)} languages share catalog strings (asked for {count})")
    keys = sorted(common)
    texts = {reference: keys}
    texts.update({lang: [by_lang[lang][k] for k in keys] for lang in chosen})
    available = {lang: len(by_lang[lang]) for lang in chosen}
    available[reference] = len(origin)
    domains: dict[str, int] = {}
    for k in keys:
        domains[origin[k]] = domains.get(origin[k], 0) + 1
    sources = sorted({d.split(":", 1)[0] for d in domains})
    for w in warnings:
        log.warning("tokenzip: %s", w)
    return ParallelText(texts, reference, f"gettext catalogs ({', '.join(sources)}; {len(domains)} domains)",
                        available, warnings, domains)


def language_of_file(path: Path) -> str:
    """``de.txt`` -> ``de``; ``deu_Latn.devtest`` -> ``deu_Latn`` (the name up to the first dot)."""
    return path.name.split(".")[0]


def from_files(paths: Iterable[str | Path], reference: str | None = None) -> ParallelText:
    """One UTF-8 file per language, aligned by line (FLORES-200 style); the language is the file name.

    ``reference`` defaults to the file whose language is ``en``/``eng``/``eng_Latn``. Files must have
    the same number of lines; lines empty in any file are dropped from all.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise TokenzipError("parallel files: give at least two files (one per language, aligned by line)")
    lines: dict[str, list[str]] = {}
    for path in paths:
        content = read_text(path, "parallel file", stdin=False)
        lang = language_of_file(path)
        if lang in lines:
            raise TokenzipError(f"two parallel files for language {lang!r}; name them <language>.txt")
        lines[lang] = content.splitlines()
    sizes = {lang: len(v) for lang, v in lines.items()}
    if len(set(sizes.values())) != 1:
        raise TokenzipError(f"parallel files must have the same number of lines; got {sizes}")
    if reference is None:
        reference = next((lang for lang in lines if re.fullmatch(r"en|eng(_Latn)?|en_US", lang)), None)
        if reference is None:
            raise TokenzipError(
                f"no English file among {', '.join(lines)}; name it en.txt or eng_Latn.* or pass reference=..."
            )
    if reference not in lines:
        raise TokenzipError(f"reference language {reference!r} has no file; have {', '.join(lines)}")
    keep = [i for i in range(sizes[reference]) if all(lines[lang][i].strip() for lang in lines)]
    warnings = []
    for lang, v in lines.items():
        if not any(x.strip() for x in v):
            raise TokenzipError(f"parallel file for {lang!r} has no text")
    if not keep:
        raise TokenzipError("no line is non-empty in every parallel file")
    if len(keep) < sizes[reference]:
        warnings.append(f"dropped {sizes[reference] - len(keep)} lines empty in some language")
    texts = {lang: [v[i].strip() for i in keep] for lang, v in lines.items()}
    return ParallelText(texts, reference, f"files ({len(paths)} languages)", dict(sizes), warnings)


def alignment_sizes(counts: Sequence[int], catalogs: Sequence[Catalog] | None = None,
                    reference: str = REFERENCE) -> list[dict[str, object]]:
    """How many catalog strings stay aligned when ``from_catalogs`` picks each number of languages
    in ``counts`` (the catalogs are read once)."""
    catalogs = list(catalogs) if catalogs is not None else find_catalogs()
    origin, by_lang = _read_catalog_table(catalogs, reference)
    rows = []
    for count in counts:
        chosen = _select_languages(by_lang, count, distinct_base=True)
        common = set.intersection(*(set(by_lang[lang]) for lang in chosen)) if chosen else set(origin)
        rows.append({"languages": len(chosen), "strings": len(common),
                     "english_bytes": sum(len(k.encode("utf-8")) for k in common)})
    return rows
