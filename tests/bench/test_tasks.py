"""Task generators: deterministic, answers placed as promised, lengths within 2% of the request."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter

import pytest

from tokenzip.bench.prompting import format_sample
from tokenzip.bench.tasks import build_sample, get_task, list_tasks
from tokenzip.bench.tasks.jsonl import read_tasks_file
from tokenzip.errors import TokenzipError
from tokenzip.testing import tiny_tokenizer

QA_TASKS = ["niah_single", "niah_single:haystack=prose", "niah_single:haystack=uuids,value=uuid",
            "niah_single:haystack=numbers", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe",
            "kv_retrieval", "qa:questions=2"]
EXACTLY_ONCE = ["niah_single", "niah_single:haystack=prose", "niah_single:haystack=uuids,value=uuid",
                "niah_single:haystack=numbers", "niah_multikey", "niah_multivalue", "niah_multiquery", "kv_retrieval",
                "qa:questions=2"]


@pytest.mark.parametrize("spec", QA_TASKS)
@pytest.mark.parametrize("length", [600, 1500])
def test_length_within_two_percent_and_deterministic(spec, length, tiny_count):
    sample = build_sample(get_task(spec), tiny_count, length, 1, seed=0)
    assert abs(tiny_count(sample.context) - length) <= 0.02 * length
    again = build_sample(get_task(spec), tiny_count, length, 1, seed=0)
    assert again == sample
    assert sample.questions and all(q.answers for q in sample.questions)
    other_seed = build_sample(get_task(spec), tiny_count, length, 1, seed=1)
    other_index = build_sample(get_task(spec), tiny_count, length, 2, seed=0)
    assert other_seed.questions[0].answers != sample.questions[0].answers
    assert other_index.context != sample.context


@pytest.mark.parametrize("spec", EXACTLY_ONCE)
def test_each_answer_is_placed_exactly_once(spec, tiny_count):
    for index in range(4):
        sample = build_sample(get_task(spec), tiny_count, 800, index, seed=3)
        for q in sample.questions:
            for answer in q.answers:
                assert sample.context.count(answer) == 1, (spec, answer)


def test_haystacks(tiny_count):
    noise = build_sample(get_task("niah_single"), tiny_count, 700, 0, 0).context
    assert noise.count("The grass is green.") > 5
    prose = build_sample(get_task("niah_single:haystack=prose"), tiny_count, 700, 0, 0).context
    assert "The grass is green." not in prose and len(set(prose.split(". "))) > 10
    uuids = build_sample(get_task("niah_single:haystack=uuids"), tiny_count, 700, 0, 0).context.splitlines()
    body = [line for line in uuids[1:-1] if "magic" not in line]
    assert len(body) > 5 and all(uuid.UUID(line) for line in body)
    numbers = build_sample(get_task("niah_single:haystack=numbers"), tiny_count, 700, 0, 0).context.splitlines()
    assert all(re.fullmatch(r"\d{7}", line) for line in numbers[1:-1] if "magic" not in line)


def test_variable_tracking_chain_leads_to_the_answers(tiny_count):
    sample = build_sample(get_task("vt:hops=3,chains=2"), tiny_count, 900, 0, 0)
    assignments = dict(re.findall(r"VAR (\w+) = (?:VAR )?(\w+)\.", sample.context))
    value = sample.questions[0].text.split("the value ")[1].split(" ")[0]

    def root(name):
        while name in assignments:
            name = assignments[name]
        return name

    holding = sorted(v for v in assignments if root(v) == value)
    assert holding == sorted(sample.questions[0].answers) and len(holding) == 4
    assert len(assignments) == 8  # the distractor chain is there too


def test_common_and_frequent_words_are_the_most_frequent(tiny_count):
    cwe = build_sample(get_task("cwe"), tiny_count, 1200, 0, 0)
    counts = Counter(line.split(". ", 1)[1] for line in cwe.context.splitlines()[1:])
    answers = cwe.questions[0].answers
    assert len(answers) == 10
    assert min(counts[a] for a in answers) > max(c for w, c in counts.items() if w not in answers)
    fwe = build_sample(get_task("fwe"), tiny_count, 1200, 0, 0)
    counts = Counter(fwe.context.splitlines()[1].split())
    assert [w for w, _ in counts.most_common(3)] == fwe.questions[0].answers


def test_kv_retrieval_sweeps_the_answer_position(tiny_count):
    positions = []
    for index in range(5):
        sample = build_sample(get_task("kv_retrieval"), tiny_count, 3000, index, 0)
        assert json.loads(sample.context.split("JSON data:\n", 1)[1])  # valid JSON
        key = sample.questions[0].text.split('"')[1]
        pairs = list(json.loads(sample.context.split("JSON data:\n", 1)[1]))
        positions.append(pairs.index(key) / (len(pairs) - 1))
        assert sample.metadata["depth"] == index / 4
    assert positions == pytest.approx([0, 0.25, 0.5, 0.75, 1], abs=0.05)


def test_perplexity_and_embedding_samples(tiny_count):
    ppl = build_sample(get_task("perplexity:continuation=64"), tiny_count, 500, 0, 0)
    assert abs(tiny_count(ppl.context) - 500) <= 10 and 50 <= tiny_count(ppl.continuation) <= 64
    emb = build_sample(get_task("embedding:corpus=12"), tiny_count, 60, 0, 0)
    assert len(emb.texts) == 12 and len(set(emb.texts)) == 12
    assert all(52 <= tiny_count(t) <= 60 for t in emb.texts)


def test_task_spec_errors():
    assert get_task("niah_single:haystack=prose,value=uuid").spec() == "niah_single:haystack=prose,value=uuid"
    assert get_task("kv_retrieval:depth=1").depth == 1.0
    with pytest.raises(TokenzipError, match="unknown task 'niah_singel'.*niah_single"):
        get_task("niah_singel")
    with pytest.raises(TokenzipError, match="has no parameter 'haystak'"):
        get_task("niah_single:haystak=prose")
    with pytest.raises(TokenzipError, match="unknown haystack"):
        get_task("niah_single:haystack=essays")
    with pytest.raises(TokenzipError, match="keys should be a int"):
        get_task("niah_multikey:keys=four")
    with pytest.raises(TokenzipError, match="too short"):
        build_sample(get_task("cwe"), lambda t: len(t.split()), 40, 0, 0)
    assert {row["task"] for row in list_tasks()} >= {"niah_single", "niah_multikey", "niah_multivalue",
                                                      "niah_multiquery", "vt", "cwe", "fwe", "kv_retrieval", "qa"}


def test_completion_and_chat_prompts(tiny_count):
    tok = tiny_tokenizer()
    sample = build_sample(get_task("niah_single"), tiny_count, 300, 0, 0)
    prompt = format_sample(sample, tok)
    q = sample.questions[0]
    assert prompt.context == sample.context
    assert prompt.questions == [(f"\nQuestion: {q.text}\nAnswer:", f" {q.answer_prefix}")]
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<start>{{ m['role'] }}\n{{ m['content'] }}<end>\n"
                         "{% endfor %}{% if add_generation_prompt %}<start>assistant\n{% endif %}")
    chat = format_sample(sample, tok)
    assert tok("x").input_ids[0] == tok.bos_token_id  # this tokenizer adds BOS itself: the template's is dropped
    assert chat.context == "<start>user\n" + sample.context
    assert chat.questions == [(f"\n\n{q.text}<end>\n<start>assistant\n", q.answer_prefix)]

    class NoBos:  # a tokenizer whose BOS only the template writes (SmolLM2's <|im_start|>): it is kept
        chat_template, bos_token, bos_token_id = tok.chat_template, tok.bos_token, tok.bos_token_id
        apply_chat_template = staticmethod(tok.apply_chat_template)

        def __call__(self, text):
            return type("Encoding", (), {"input_ids": tok(text).input_ids[1:]})()

    assert format_sample(sample, NoBos()).context == tok.bos_token + "<start>user\n" + sample.context


def test_tasks_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"context": "Paris is in France.", "question": "Where is Paris?", "answer": "France"},
            {"context": "Paris is in France.", "question": "What is in France?", "answer": ["Paris"],
             "answer_prefix": "It is"},
            {"context": "Ice is cold.", "question": "Is ice hot?", "answer": "no", "max_new_tokens": 4}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    samples = read_tasks_file(path)
    assert [len(s.questions) for s in samples] == [2, 1]
    assert samples[0].task == "mine" and samples[0].questions[1].answer_prefix == "It is"
    assert samples[1].index == 1 and samples[1].max_new_tokens == 4 and samples[0].metric == "part"
    assert samples[0].max_new_tokens == 32
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(TokenzipError, match="bad.jsonl, line 2: not valid JSON"):
        read_tasks_file(bad)
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"context": "x", "question": "y"}) + "\n")
    with pytest.raises(TokenzipError, match="line 2: missing field 'answer'"):
        read_tasks_file(bad)
    bad.write_text(json.dumps({"context": "x", "question": "y", "answer": 3}) + "\n")
    with pytest.raises(TokenzipError, match="line 1: field 'answer' must be a string or a list"):
        read_tasks_file(bad)
    with pytest.raises(TokenzipError, match="tasks file .*missing.jsonl does not exist"):
        read_tasks_file(tmp_path / "missing.jsonl")
    with pytest.raises(TokenzipError, match="is a directory, not a file"):
        read_tasks_file(tmp_path)


def write_lines(path, *rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


QA = {"context": "Paris is in France.", "question": "Where is Paris?", "answer": "France"}


@pytest.mark.parametrize("field,value,message", [
    ("length", "abc", "line 2: field 'length' must be an integer, got 'abc' (str)"),
    ("index", 1.5, "line 2: field 'index' must be an integer, got 1.5 (float)"),
    ("index", True, "line 2: field 'index' must be an integer, got True (bool)"),
    ("index", -1, "line 2: field 'index' must be an integer >= 0, got -1"),
    ("length", -5, "line 2: field 'length' must be an integer >= 0"),
    ("max_new_tokens", 0, "line 2: field 'max_new_tokens' must be an integer >= 1, got 0"),
    ("max_new_tokens", "8", "line 2: field 'max_new_tokens' must be an integer"),
    ("formatted", "yes", "line 2: field 'formatted' must be true or false"),
    ("task", "", "line 2: field 'task' must be a non-empty name"),
    ("answer_prefix", 3, "line 2: field 'answer_prefix' must be a string"),
    ("metric", "best", "line 2: metric must be one of"),
])
def test_tasks_file_fields_are_checked_with_their_line(tmp_path, field, value, message):
    path = write_lines(tmp_path / "t.jsonl", QA, dict(QA, context="Ice is cold.", **{field: value}))
    with pytest.raises(TokenzipError, match=re.escape(message)):
        read_tasks_file(path)


def test_tasks_file_contexts_sharing_an_index_are_refused(tmp_path):
    """Two contexts with one (task, length, index) would share their bench rows' key: refused with both lines."""
    path = write_lines(tmp_path / "t.jsonl", dict(QA, index=3), dict(QA, context="Ice is cold.", index=3))
    with pytest.raises(TokenzipError, match="lines 1 and 2: two different contexts .* index 3.*own 'index'"):
        read_tasks_file(path)
    path = write_lines(tmp_path / "t.jsonl", dict(QA, index=3), dict(QA, question="What is in France?", index=4))
    with pytest.raises(TokenzipError, match="line 2: the same task and context as line 1, but another length/index"):
        read_tasks_file(path)
    # same index under different tasks or lengths is fine; a line without an index takes a free one
    path = write_lines(tmp_path / "t.jsonl", dict(QA, index=1), dict(QA, context="B.", task="other", index=1),
                       dict(QA, context="C.", index=1, length=100), dict(QA, context="D."), dict(QA, context="E."))
    ids = [s.id for s in read_tasks_file(path)]
    assert len(set(ids)) == 5 and ids[:3] == ["t|0|1", "other|0|1", "t|100|1"]


def test_a_new_task_is_one_small_dataclass(tiny_count):
    """docs/extending.md's example: register a task and it is available by name, with its parameters."""
    from dataclasses import dataclass

    from tokenzip.bench.tasks import TASKS, Draft, Question, Task, register_task
    from tokenzip.bench.tasks.base import filler_render
    from tokenzip.bench.tasks.haystack import Filler

    @register_task
    @dataclass
    class Passkey(Task):
        """A pass key hidden in noise (Mohtashami & Jaggi 2023, arXiv 2305.16300)."""

        name = "passkey_test"
        description = "a pass key hidden in noise"
        max_new_tokens = 8
        digits: int = 5

        def draft(self, rng, index, length, count):
            key = str(rng.randint(10 ** (self.digits - 1), 10**self.digits - 1))
            render, parts = filler_render("There is a pass key hidden in this text.\n", Filler("noise", rng),
                                          [(rng.random(), f"The pass key is {key}. Remember it.")])
            return Draft([Question("What is the pass key?", [key], "The pass key is")], render, parts)

    try:
        sample = build_sample(get_task("passkey_test:digits=6"), tiny_count, 500, 0, seed=0)
        assert abs(tiny_count(sample.context) - 500) <= 10
        assert len(sample.questions[0].answers[0]) == 6 and sample.context.count(sample.questions[0].answers[0]) == 1
    finally:
        TASKS.remove("passkey_test")
