"""The prompt stage on the real Gemma 3 270M scorer (slow: loads the weights)."""

from __future__ import annotations

import pytest
import regex

import tokenzip as tz

pytestmark = pytest.mark.slow

DOCS = [
    "The bakery on Mill Street sells fresh bread and cakes every morning to the people of the village.",
    "The river flows slowly past the old mill, through green fields and under two stone bridges.",
    "The password for the blue door in the east wing of the castle is written on a card under the clock.",
    "Children play football in the park after school on sunny afternoons while their parents chat.",
    "The museum opens at nine and closes late on the first Friday of each month for special tours.",
]
QUESTION = "Where is the password for the blue door written?"


def test_question_aware_methods_keep_the_relevant_document(gemma):
    text = "\n\n".join(DOCS)
    for method in ("longllmlingua", "extractive"):
        r = tz.prompt.compress(text, ratio=0.7, method=method, scorer=gemma, question=QUESTION)
        assert r.tokens_after <= r.budget and r.budget - r.tokens_after <= (5 if method != "extractive" else 30)
        assert {"password", "blue", "door"} <= set(r.text.split()), (method, r.text)
        assert r.tokens_after == len(gemma[1](r.text, add_special_tokens=False)["input_ids"])


def test_llmlingua_on_gemma_meets_the_budget_and_keeps_chinese_whole(gemma):
    zh = ("人工智能正在改变世界。研究人员开发了新的模型，可以理解和生成自然语言。"
          "这些模型在很多任务上表现出色，但是它们也需要大量的计算资源。")
    r = tz.prompt.compress(zh, ratio=0.5, method="llmlingua", scorer=gemma)
    assert abs(r.tokens_after - r.budget) <= 5 and "\ufffd" not in r.text
    src = iter(regex.findall(r"\X", zh))
    assert all(any(g == h for h in src) for g in regex.findall(r"\X", r.text))
    en = " ".join(DOCS) + " Order 4417 ships on 2024-03-15."
    r = tz.prompt.compress(en, ratio=0.5, method="llmlingua", scorer=gemma)
    assert "4417" in r.text and "2024-03-15" in r.text and abs(r.tokens_after - r.budget) <= 5
