"""The context/question rule, the fallback chat template, and the byte-bounded LRU."""

from __future__ import annotations

import pytest

from tokenzip.serve.cache import ContextCache, Entry
from tokenzip.serve.split import chat_prompt, completion_prompt, fallback_template, split_paragraph


@pytest.mark.parametrize("text, before, last", [
    ("Doc a.\n\nDoc b.\n\nQuestion?", "Doc a.\n\nDoc b.\n\n", "Question?"),
    ("Doc.\n\n\n\nQ: x?\nA:", "Doc.\n\n\n\n", "Q: x?\nA:"),
    ("One paragraph only.", "", "One paragraph only."),
    ("Doc.\n\nQuestion?\n\n", "Doc.\n\n", "Question?\n\n"),  # a trailing blank line is not a cut
    ("\n\nQuestion?", "", "\n\nQuestion?"),
])
def test_split_paragraph(text: str, before: str, last: str) -> None:
    assert split_paragraph(text) == (before, last)
    assert before + last == text


def test_completion_rules() -> None:
    p = completion_prompt("The doc.\n\nThe question?")
    assert p.render() == ("The doc.\n\n", "The question?") and p.documents == ["The doc.\n\n"]
    p = completion_prompt("Question: x?", context="Doc text. ")
    assert p.render() == ("Doc text. ", "Question: x?")
    assert completion_prompt("No context.").render() == ("", "No context.")


def test_chat_rule_with_the_fallback_template() -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Doc.\n\nWhat?"}]
    p = chat_prompt(msgs)
    context, question = p.render()
    assert context + question == fallback_template(msgs) == "Be brief.\n\nUser: Doc.\n\nWhat?\n\nAssistant:"
    assert context == "Be brief.\n\nUser: Doc.\n\n" and p.question == "What?"
    assert p.render(["B.", "D.\n\n"])[0] == "B.\n\nUser: D.\n\n"  # compressed documents
    assert p.chat_messages(["B.", "D.\n\n"])[1]["content"] == "D.\n\nWhat?"
    single = chat_prompt([{"role": "user", "content": "Hi?"}])
    assert single.render() == ("", "User: Hi?\n\nAssistant:")


class _Fake:
    pass


def test_lru_is_bounded_by_bytes_and_keeps_entries_in_use() -> None:
    cache = ContextCache(100)
    a, b, c = (Entry(_Fake(), 10, 40, 80) for _ in range(3))
    assert cache.put("a", a) and cache.put("b", b)
    held = cache.get("a")  # a request holds "a"; "a" becomes most recently used
    assert cache.put("c", c)  # evicts "b", the least recently used
    assert cache.get("b") is None and cache.get("a") is a and cache.bytes == 80 and cache.evictions == 1
    assert cache.put("d", Entry(_Fake(), 10, 90, 180))  # evicts both
    assert cache.get("a") is None and len(cache) == 1 and cache.bytes == 90
    assert held is a and held.compressed is not None  # the request's reference still works
    assert not cache.put("huge", Entry(_Fake(), 10, 101, 200)) and cache.bytes == 90
    assert ContextCache(0).put("x", a) is False
