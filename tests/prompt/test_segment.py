"""Segmentation and assembly: deletions at word and grapheme boundaries only, spans map back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import regex

from tokenzip.prompt.modes import build_pieces
from tokenzip.prompt.segment import FIXED, SEP, WORD, assemble

SAMPLES = {
    "chinese": "今天天气很好，我们去公园散步吧。北京是中国的首都，有很多名胜古迹。",
    "japanese": "日本語のテキストを圧縮します。東京タワーはとても高いです。カタカナとひらがな。",
    "emoji": "Family 👨‍👩‍👧‍👦 and flags 🇫🇷 🇯🇵 with skin tones 👍🏽 and keycaps #️⃣ here 🏳️‍🌈 end",
    "combining": "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 Zoe\u0308 and Hindi नमस्ते दुनिया and Thai สวัสดีครับ",
}


def graphemes(text: str) -> list[str]:
    return regex.findall(r"\X", text)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_piece_boundaries_are_grapheme_boundaries(name):
    text = SAMPLES[name]
    pieces = build_pieces(text, "text", [])
    bounds = set(np.cumsum([0] + [len(g) for g in graphemes(text)]).tolist())
    for i in range(len(pieces)):
        assert int(pieces.start[i]) in bounds and int(pieces.end[i]) in bounds and int(pieces.gap_end[i]) in bounds
    # Pieces tile the text: every character belongs to exactly one piece or gap.
    covered = sorted((int(s), int(g)) for s, g in zip(pieces.start, pieces.gap_end))
    assert covered[0][0] == 0 and covered[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))


def test_spaceless_scripts_are_split_per_grapheme():
    pieces = build_pieces("東京タワー abc", "text", [])
    words = [pieces.piece_text(i) for i in range(len(pieces)) if pieces.category[i] == WORD]
    assert words[:5] == ["東", "京", "タ", "ワ", "ー"] and words[-1] == "abc"


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_deletion_keeps_whole_graphemes(name, seed):
    text = SAMPLES[name]
    pieces = build_pieces(text, "text", [])
    keep = np.random.default_rng(seed).random(pieces.n_units) < 0.5
    out, spans = assemble(pieces, keep)
    out.encode("utf-8").decode("utf-8")
    original = set(graphemes(text)) | {" ", "\n"}
    assert set(graphemes(out)) <= original  # no grapheme was cut into a new one
    for s, e, o in spans:
        assert out[o : o + e - s] == text[s:e]


def test_assembly_rules():
    text = "alpha beta gamma\n\ndelta epsilon\nzeta"
    pieces = build_pieces(text, "text", [])
    words = {pieces.piece_text(i): int(pieces.unit[i]) for i in range(len(pieces)) if pieces.category[i] == WORD}

    def keep(*names):
        mask = np.zeros(pieces.n_units, dtype=bool)
        mask[[words[n] for n in names]] = True
        return assemble(pieces, mask)[0]

    assert keep("alpha", "gamma") == "alpha gamma"
    assert keep("alpha", "zeta") == "alpha\n\nzeta"  # the widest break among the deleted lines
    assert keep("gamma", "delta") == "gamma\n\ndelta"
    assert keep("epsilon", "zeta") == "epsilon\nzeta"
    assert keep(*words) == text


def test_protected_words_are_fixed():
    text = "call 555-0199 or see https://example.com/x?y=1 or mail a.b@example.org today, code XZ-9"
    pieces = build_pieces(text, "text", [regex.compile(r"XZ-\d")])
    fixed = {pieces.piece_text(i) for i in range(len(pieces)) if pieces.unit[i] == FIXED and pieces.category[i] != SEP}
    assert fixed == {"555-0199", "https://example.com/x?y=1", "a.b@example.org", "XZ-9"}
    unprotected = build_pieces(text, "text", [], protect=False)
    assert (unprotected.unit[unprotected.category == WORD] >= 0).all()
