"""Turn user-interface strings into plain text: strip placeholders, markup and accelerators.

Translation catalogs are parallel text, but their strings carry things that are not language:
printf and Python format placeholders (``%s``, ``%(name)s``, ``%1$d``, ``{0}``, ``{name}``), markup
(``<b>``, ``&amp;``) and keyboard accelerators (``_File``, ``&Open``, ``(_F)``). Counting tokens on
them would measure the placeholders, so they are removed before any tokenizer sees the text.
"""

from __future__ import annotations

import html
import re

_PRINTF = re.compile(
    r"%(?:\([^)]*\))?(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
    r"(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGaAcspnmSC]"
    r"|%<[A-Za-z0-9_]+>|%\d+"
)
_FORMAT = re.compile(r"\{[^{}\s]*\}")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_ACCEL_PAREN = re.compile(r"\s*[(（][_&][^\W_][)）]")
_ACCEL = re.compile(r"(?:(?<=^)|(?<=[\s\w]))(?:_|&(?!#?\w+;))(?=[^\W_])")
_ACCEL_AMP = re.compile(r"&(?!#?\w+;)")
_SPACE = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")


def clean_ui_string(text: str) -> str:
    """Plain text of one catalog string; '' when nothing that reads as language is left."""
    text = text.split("\x04", 1)[-1]  # msgctxt prefix
    # removed without a space: a space would split words in scripts written without spaces
    text = _PRINTF.sub("", text.replace("%%", "\x00")).replace("\x00", "%")
    text = _FORMAT.sub("", text.replace("{{", "\x01").replace("}}", "\x02")).replace("\x01", "{").replace("\x02", "}")
    text = _TAG.sub("", text)
    text = _ACCEL_PAREN.sub("", text)
    if text.count("_") + len(_ACCEL_AMP.findall(text)) == 1:  # one marker: a mnemonic, not an identifier
        text = _ACCEL.sub("", text)
    text = html.unescape(text)
    text = _SPACE.sub(" ", text).strip()
    return text if _LETTER.search(text) else ""
