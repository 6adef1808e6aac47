"""Every prompt method: protected spans survive, multibyte text stays whole, and each method's own
criterion decides what is kept (checked with scorers whose scores are known)."""

from __future__ import annotations

import math

import pytest
import regex
import torch

import tokenzip as tz
from tokenzip.prompt.scorer import CausalScorer

METHODS = ["head", "tail", "random", "selective_context", "llmlingua", "longllmlingua", "extractive", "longcodezip"]

PROTECTED = ("Order 66 shipped on 2024-03-15 for $1,299.99 to https://shop.example.com/orders?id=77 and the client "
             "wrote to help@example.org about ticket ZX-4417. The weather was nice and the team had lunch together. "
             "Later the manager asked about the budget and the timeline of the big project in the city.")

MULTILINGUAL = {
    "chinese": "人工智能正在改变世界。研究人员开发了新的模型，可以理解和生成自然语言。这些模型在很多任务上表现出色，"
               "但是它们也需要大量的计算资源。未来我们需要更高效的方法来压缩提示词。",
    "japanese": "東京は日本の首都です。多くの人々が毎日電車で通勤しています。桜の季節には、公園がとても美しくなります。"
                "カタカナのコンピューターやテクノロジーという言葉もよく使われます。",
    "emoji": "Party time 🎉🎉 with the family 👨‍👩‍👧‍👦 and friends 👩🏽‍💻 from France 🇫🇷 and Japan 🇯🇵 "
             "we ate 🍣 and 🍕 and laughed 😂 a lot, then walked home 🚶‍♀️ under the stars ✨ 🏳️‍🌈 ❤️‍🔥.",
    "combining": "Le cafe\u0301 e\u0301tait plein. Zoe\u0308 a lu un re\u0301sume\u0301 nai\u0308f. "
                 "नमस्ते दुनिया, यह एक परीक्षण है। Tiếng Việt có nhiều dấu thanh điệu khác nhau.",
}


@pytest.mark.parametrize("method", METHODS)
def test_protected_spans_survive(tiny, method):
    r = tz.prompt.compress(PROTECTED, ratio=0.7, method=method, scorer=tiny, keep=[r"\bbudget\b", r"big project"],
                           question="when did the order ship?")
    for span in ("66", "2024-03-15", "$1,299.99", "https://shop.example.com/orders?id=77", "help@example.org",
                 "ZX-4417", "budget", "big project"):
        assert span in r.text, (method, span)
    assert r.tokens_after < r.tokens_before


def _subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(any(g == h for h in it) for g in small)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(MULTILINGUAL))
def test_multibyte_text_stays_whole(tiny, method, name):
    text = MULTILINGUAL[name]
    try:
        r = tz.prompt.compress(text, ratio=0.5, method=method, scorer=tiny, question="什么？")
    except tz.TokenzipError as exc:  # the emoji text is one sentence, over half the budget: nothing would be left
        assert method == "extractive" and name == "emoji" and "nothing would be left" in str(exc), exc
        return
    r.text.encode("utf-8", errors="strict")
    src = [g for g in regex.findall(r"\X", text) if not g.isspace()]
    for block in r.text.split("\n\n"):  # a reordering method moves blocks; each is a piece of the original
        out = [g for g in regex.findall(r"\X", block) if not g.isspace()]
        assert _subsequence(out, src), (method, name, r.text)  # whole graphemes, in order, none invented
    assert "\ufffd" not in r.text
    assert r.tokens_after <= r.budget and r.tokens_after < r.tokens_before


def test_scorer_matches_the_model_exactly_and_batching_changes_nothing(tiny):
    model, tok = tiny
    scorer = CausalScorer(model, tok)
    a = tok("the quick brown fox jumps over the lazy dog", add_special_tokens=False)["input_ids"]
    b = tok("hello world", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        ids = torch.tensor([[tok.bos_token_id] + a])
        logp = model(ids).logits[0, :-1].log_softmax(-1)
        expected = -logp.gather(-1, ids[0, 1:, None])[:, 0]
    together = scorer.surprisal([((), a), (b, a[:4]), ((), b)])
    assert torch.allclose(together[0], expected, atol=1e-4)
    assert torch.allclose(scorer.surprisal([((), a)])[0], expected, atol=1e-4)
    assert torch.allclose(together[1], scorer.surprisal([(b, a[:4])])[0], atol=1e-4)


def test_text_longer_than_the_window_is_scored_in_chunks(tiny, make_prose):
    model, tok = tiny
    scorer = CausalScorer(model, tok, window=64, overlap=16)
    text = make_prose(400)
    spans, info = scorer.text_information(text)
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    assert len(info) == n == len(spans) and n > 4 * 64
    assert scorer.forwards == 1  # all windows in one batched forward
    assert torch.isfinite(info).all()
    r = tz.prompt.compress(text, ratio=0.5, method="selective_context", scorer=scorer)
    assert max(s.end for s in r.kept_spans) > 0.9 * len(text)


def test_llmlingua_runs_one_forward_per_segment(tiny, make_prose):
    model, tok = tiny
    scorer = CausalScorer(model, tok)
    text = make_prose(500)
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    tz.prompt.compress(text, ratio=0.5, method="llmlingua", scorer=scorer, iterative_size=128)
    assert scorer.forwards == math.ceil(n / 128)


def test_llmlingua_conditions_each_segment_on_the_kept_prefix(word_scorer):
    from tokenzip.prompt.methods.llmlingua import LLMLingua

    seen = []

    class Recorder(word_scorer):
        def surprisal(self, sequences):
            seen.extend(sequences)
            return super().surprisal(sequences)

    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    scores = {w: float(i) for i, w in enumerate(words)}
    scorer = Recorder(scores)
    r = tz.prompt.compress(" ".join(words), budget=4, method="llmlingua", scorer=scorer, target_tokenizer=str.split,
                           iterative_size=4, context_tokens=10)
    assert [scorer.words[i] for i in seen[1][0]] == ["gamma", "delta"]  # the kept half of segment one
    assert r.text == "eps zeta eta theta"
    assert LLMLingua.paper.startswith("Jiang")


def test_longllmlingua_ranks_documents_by_the_question(context_scorer):
    docs = [
        "The bakery sells bread and cakes every morning to the village people.",
        "The river flows slowly past the old mill and the green fields nearby.",
        "The secret vault code is hidden behind the painting in the library room.",
        "Children play football in the park after school on sunny afternoons.",
        "The museum opens at nine and closes late on the first friday evening.",
    ]
    text = "\n\n".join(docs)
    scorer = context_scorer({})
    r = tz.prompt.compress(text, ratio=0.75, method="longllmlingua", scorer=scorer, target_tokenizer=str.split,
                           question="Where is the secret vault code hidden?")
    kept = set(r.text.split())
    assert {"secret", "vault", "code", "hidden"} <= kept
    assert not kept & {"bakery", "football", "museum", "river"}
    reordered = tz.prompt.compress(text, ratio=0.5, method="longllmlingua", scorer=scorer, target_tokenizer=str.split,
                                   question="Where is the secret vault code hidden?", reorder="sort")
    assert reordered.text.split()[0] in docs[2].split()
    last = tz.prompt.compress(text, ratio=0.5, method="longllmlingua", scorer=scorer, target_tokenizer=str.split,
                              question="Where is the secret vault code hidden?", reorder="best-last")
    assert last.text.split("\n\n")[-1].split()[0] in docs[2].split() and len(last.text.split("\n\n")) >= 2
    with pytest.raises(tz.TokenzipError, match="sort"):
        tz.prompt.compress(text, ratio=0.5, method="longllmlingua", question="Where?", reorder=True)


def test_extractive_keeps_the_relevant_sentence(context_scorer):
    sentences = ["The cat sleeps on the warm sofa all day.", "Paris is the capital city of France.",
                 "Bananas are yellow when they are ripe.", "The train leaves the station at noon."]
    text = " ".join(sentences)
    r = tz.prompt.compress(text, budget=9, method="extractive", scorer=context_scorer({}), target_tokenizer=str.split,
                           question="What is the capital of France?")
    assert r.text == sentences[1]


FACTS = ["The cat sleeps on the warm sofa all day.", "Paris is the capital city of France.",
         "Bananas are yellow when they are ripe.", "The train leaves the station at noon."]


def test_extractive_moves_the_most_relevant_sentence_before_the_question(context_scorer):
    text = " ".join(FACTS)
    question = "What is the capital of France?"
    kept = [FACTS[0], FACTS[1], FACTS[3]]
    r = tz.prompt.compress(text, budget=24, method="extractive", scorer=context_scorer({"bananas": 0.0}),
                           target_tokenizer=str.split, question=question)
    assert r.text == f"{FACTS[0]} {FACTS[3]}\n\n{FACTS[1]}"
    plain = tz.prompt.compress(text, budget=24, method="extractive", scorer=context_scorer({"bananas": 0.0}),
                               target_tokenizer=str.split, question=question, reorder="none")
    assert plain.text == " ".join(kept)
    with pytest.raises(tz.TokenzipError, match="best-last"):
        tz.prompt.compress(text, ratio=0.5, method="extractive", question=question, reorder="first")


def test_extractive_keeps_a_protected_number_with_its_sentence(context_scorer):
    text = " ".join([*FACTS, "The museum was built in 1871 by the river."])
    r = tz.prompt.compress(text, budget=18, method="extractive", scorer=context_scorer({}), target_tokenizer=str.split,
                           question="What is the capital of France?")
    assert r.text == f"The museum was built in 1871 by the river.\n\n{FACTS[1]}"
    orphan = tz.prompt.compress(text, budget=18, method="extractive", scorer=context_scorer({}), reorder="none",
                                target_tokenizer=str.split, question="What is the capital of France?",
                                protected_first=False)
    assert "1871" in orphan.text and "museum" not in orphan.text  # the number alone, without its sentence
    squeezed = tz.prompt.compress(text, budget=9, method="extractive", scorer=context_scorer({}),
                                  target_tokenizer=str.split, question="What is the capital of France?")
    assert squeezed.text == "The museum was built in 1871 by the river."  # the relevant sentence no longer fits
    tight = tz.prompt.compress(text, budget=3, method="extractive", scorer=context_scorer({}),
                               target_tokenizer=str.split, question="What is the capital of France?")
    assert tight.text == "1871"  # a protected span is never removed, even when its sentence cannot stay


def test_extractive_scores_a_repeated_sentence_once(context_scorer):
    class Counting(context_scorer):
        sequences = 0

        def surprisal(self, sequences):
            self.sequences += len(sequences)
            return super().surprisal(sequences)

    scorer = Counting({})
    text = " ".join(["The grass is green."] * 10 + [FACTS[1]] + ["The sky is blue."] * 10)
    r = tz.prompt.compress(text, budget=10, method="extractive", scorer=scorer, target_tokenizer=str.split,
                           question="What is the capital of France?")
    assert scorer.sequences == 3  # three distinct sentences
    assert FACTS[1] in r.text


def test_longcodezip_keeps_the_function_the_query_needs(context_scorer):
    code = "\n\n".join(
        f"def {name}(x):\n    value = x + 1\n    {body}\n    return value\n"
        for name, body in [("load_config", "config = read(value)"), ("parse_tokens", "tokens = split(value)"),
                           ("compress_prompt", "budget = fit(value)"), ("draw_chart", "chart = plot(value)")]
    )
    r = tz.prompt.compress(code, ratio=0.6, method="longcodezip", scorer=context_scorer({}), mode="code",
                           target_tokenizer=str.split, question="how does compress_prompt fit the budget")
    assert "def compress_prompt(x):" in r.text and "budget = fit(value)" in r.text
    assert "draw_chart" not in r.text


@pytest.mark.parametrize("method", METHODS)
def test_registered_with_paper_and_stage(method):
    rows = {row["name"]: row for row in tz.methods(stage="prompt")}
    assert rows[method]["stage"] == "prompt" and rows[method]["paper"]


def test_compress_takes_a_method_object_as_the_kv_stage_does(tiny):
    """A method object carries its ratio or budget and parameters: the same result as the name with them; giving them
    twice, or a method of another stage, is refused."""
    by_name = tz.prompt.compress(PROTECTED, budget=30, method="random", scorer=tiny, seed=3)
    by_object = tz.prompt.compress(PROTECTED, method=tz.get_method("prompt.random", budget=30, seed=3), scorer=tiny)
    assert (by_object.text, by_object.tokens_after, by_object.method) == (by_name.text, by_name.tokens_after, "random")
    by_ratio = tz.prompt.compress(PROTECTED, method=tz.get_method("head", ratio=0.5), scorer=tiny)
    assert by_ratio.text == tz.prompt.compress(PROTECTED, ratio=0.5, method="head", scorer=tiny).text
    with pytest.raises(tz.TokenzipError, match="ratio given here too"):
        tz.prompt.compress(PROTECTED, ratio=0.5, method=tz.get_method("head", ratio=0.5), scorer=tiny)
    with pytest.raises(tz.TokenzipError, match="not a prompt method"):
        tz.prompt.compress(PROTECTED, method=tz.get_method("snapkv", ratio=0.5), scorer=tiny)
