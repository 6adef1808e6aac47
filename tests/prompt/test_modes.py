"""Structure modes: JSON stays valid with the same keys, Markdown keeps headings and fences, Python parses."""

from __future__ import annotations

import ast
import json

import pytest

import tokenzip as tz
from tokenzip.errors import TokenzipError

METHODS = ["head", "tail", "random", "selective_context", "llmlingua", "longllmlingua", "extractive", "longcodezip"]

DOC = {
    "title": "A long report about the quick brown fox and the lazy dog in the city",
    "tags": ["animals", "story with many words about a dog and a cat and a tree"],
    "count": 42,
    "nested": {"summary": "The fox jumps over the dog while the cat watches from the green tree near the river",
               "escaped": "line one\nline \"two\" with a tab\t and unicode é 中文 and a path C:\\temp\\x",
               "flag": True, "none": None},
    "empty": "",
    "日本": "日本語のテキストをここに書きます。とても長い説明です。",
}

MARKDOWN = """# Title of the document

Some introductory prose that goes on for a while about the quick brown fox and the lazy dog.

## Install

Run the following command in a terminal window to install the package and its dependencies:

```bash
pip install tokenzip  # keep this exactly
echo "done"
```

- first item of the list with several words in it
- second item, also quite long and wordy for the test
1. numbered item with text

| col a | col b |
|-------|-------|
| 1     | 2     |

Setext heading
--------------

Closing paragraph with `inline code` and a [link](https://example.com/docs) and more words to drop.
"""

CODE = '''"""Module docstring."""
import os


def add(a, b):
    """Add two numbers."""
    total = a + b
    # a comment line
    if total > 10:
        print("big")
        total -= 1
    else:
        print("small")
    return total


class Greeter:
    def __init__(self, name):
        self.name = name
        self.count = 0

    def greet(self):
        for i in range(3):
            try:
                print("hello", self.name, i)
            except ValueError:
                pass
            finally:
                self.count += 1
        return f"""multi
line # not a comment
string"""


def long_function(x):
    y = x * 2; z = y + 1
    values = [
        x,
        y,
        z,
    ]
    while x > 0:
        x -= 1
    return values
'''


def keys(obj):
    if isinstance(obj, dict):
        return {k: keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [keys(v) for v in obj]
    return type(obj).__name__


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("indent", [None, 2])
def test_json_stays_valid_with_keys_intact(tiny, method, indent):
    text = json.dumps(DOC, ensure_ascii=False, indent=indent)
    r = tz.prompt.compress(text, ratio=0.4, method=method, scorer=tiny, mode="json", question="what does the fox do?")
    out = json.loads(r.text)
    assert keys(out) == keys(DOC)
    assert out["count"] == 42 and out["nested"]["flag"] is True and out["nested"]["none"] is None
    assert r.tokens_after < r.tokens_before


def test_invalid_json_is_a_clear_error(tiny):
    with pytest.raises(TokenzipError, match="valid JSON.*line 1"):
        tz.prompt.compress('{"a": "b",}', mode="json", method="head", scorer=tiny)


@pytest.mark.parametrize("method", METHODS)
def test_markdown_keeps_headings_fences_and_tables(tiny, method):
    r = tz.prompt.compress(MARKDOWN, ratio=0.5, method=method, scorer=tiny, mode="markdown", question="how to install?")
    for line in ("# Title of the document", "## Install", "```bash", "pip install tokenzip  # keep this exactly",
                 'echo "done"', "| col a | col b |", "|-------|-------|", "Setext heading", "--------------",
                 "`inline code`", "[link](https://example.com/docs)"):
        assert line in r.text, (method, line)
    assert r.text.count("```") == 2
    assert r.tokens_after <= r.budget or r.notes


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.3, 0.6, 0.9])
def test_code_mode_stays_parseable(tiny, method, ratio):
    if method == "extractive":  # code has no sentences: the whole text is its one unit, over any budget
        with pytest.raises(TokenzipError, match="nothing would be left"):
            tz.prompt.compress(CODE, ratio=ratio, method=method, scorer=tiny, mode="code")
        return
    r = tz.prompt.compress(CODE, ratio=ratio, method=method, scorer=tiny, mode="code",
                           question="how are greetings counted?")
    ast.parse(r.text)
    assert r.tokens_after <= r.budget or r.notes
    for line in r.text.splitlines():  # whole lines only
        assert line in CODE.splitlines()


def test_code_mode_errors_on_broken_python(tiny):
    with pytest.raises(TokenzipError, match="parses"):
        tz.prompt.compress("def f(:\n  pass", mode="code", method="head", scorer=tiny)


def test_code_keep_pattern_keeps_the_statement_and_its_parents(tiny):
    r = tz.prompt.compress(CODE, ratio=0.9, method="random", scorer=tiny, mode="code", keep=[r'"hello"'])
    ast.parse(r.text)
    assert 'print("hello", self.name, i)' in r.text and "class Greeter:" in r.text and "def greet(self):" in r.text
