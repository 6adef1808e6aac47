"""two_facts: a long document whose answer needs two facts far apart."""

import pytest

from tokenzip.bench.tasks import build_sample, get_task
from tokenzip.errors import TokenzipError
from tokenzip.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def count():
    tok = tiny_tokenizer()
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)


@pytest.mark.parametrize("length", [600, 3000])
def test_pair_puts_the_two_facts_at_opposite_ends(count, length):
    for index in range(3):
        sample = build_sample(get_task("two_facts"), count, length, index, seed=0)
        assert abs(count(sample.context) - length) <= 0.02 * length
        (question,) = sample.questions
        town, job = question.answers
        early, late = sample.context.index(f"born in the town of {town}"), sample.context.index(f"as a {job}")
        assert late - early > 0.4 * len(sample.context)  # depths 0.05-0.25 and 0.75-0.95
        assert sample.metric == "all" and all(sample.context.count(a) == 1 for a in question.answers)


def test_hop_chains_the_facts_through_a_town(count):
    sample = build_sample(get_task("two_facts:mode=hop"), count, 2000, 0, seed=0)
    (question,) = sample.questions
    (specialty,) = question.answers
    late = sample.context.index(f"for its {specialty}")
    town = sample.context[:late].rsplit("The town of ", 1)[1].split(" ")[0]
    first = sample.context.index(f"grew up in the town of {town}")
    assert first < late and sample.context.count(specialty) == 1
    assert town not in question.text  # the question names the person, not the town


def test_bad_parameters_are_refused():
    with pytest.raises(TokenzipError, match="mode"):
        get_task("two_facts:mode=triple")
    with pytest.raises(TokenzipError, match="early <= late"):
        get_task("two_facts:early=0.6,late=0.4")
