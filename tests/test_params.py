"""Method parameters are checked when the method is built (tz.get_method), for every method of every stage."""

import dataclasses

import pytest

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.method import registered
from tokenzip.params import declared


@pytest.mark.parametrize("name,params,message", [
    ("snapkv", {"window_size": -1}, "kv.snapkv: parameter window_size must be an integer >= 1, got -1 (int)"),
    ("kivi", {"bits": "4"}, "kv.kivi: parameter bits must be an integer, one of 2, 4, 8, got '4' (str)"),
    ("kivi", {"bits": 3}, "kv.kivi: parameter bits must be an integer, one of 2, 4, 8, got 3 (int)"),
    ("kivi", {"bits": 2, "group": 6}, "kv.kivi: parameter group must be a multiple of 4 at 2 bits"),
    ("h2o", {"recent": 1.5}, "kv.h2o: parameter recent must be a number in [0.0, 1.0], got 1.5 (float)"),
    ("h2o", {"recent": float("nan")}, "kv.h2o: parameter recent must be a number in [0.0, 1.0], got nan"),
    ("streaming_llm", {"sinks": True}, "kv.streaming_llm: parameter sinks must be an integer >= 0, got True (bool)"),
    ("snapkv", {"kernel": 2.0}, "kv.snapkv: parameter kernel must be an integer >= 1, got 2.0 (float)"),
    ("snapkv", {"compress_sliding": "no"}, "kv.snapkv: parameter compress_sliding must be true or false"),
    ("decoding", {"interval": 0}, "kv.decoding: parameter interval must be an integer >= 1, got 0"),
    ("zipcache", {"salient": -0.1}, "kv.zipcache: parameter salient must be a number in [0.0, 1.0]"),
    ("tome", {"prop_attn": "yes"}, "layers.tome: parameter prop_attn must be true or false, got 'yes' (str)"),
    ("tome", {"metric": "cosine"}, "layers.tome: parameter metric must be a string, one of 'keys', 'hidden'"),
    ("tome", {"protect": -1}, "layers.tome: parameter protect must be an integer >= 0 (or None), got -1"),
    ("dart", {"pivots": 0}, "layers.dart: parameter pivots must be an integer >= 1, got 0"),
    ("zero_tprune", {"importance_share": 2}, "layers.zero_tprune: parameter importance_share must be a number in"),
    ("llmlingua", {"iterative_size": 0}, "prompt.llmlingua: parameter iterative_size must be an integer >= 1"),
    ("extractive", {"reorder": "first"}, "prompt.extractive: parameter reorder must be a string, one of 'best-last'"),
    ("longllmlingua", {"dynamic_ratio": "0.2"}, "prompt.longllmlingua: parameter dynamic_ratio must be a number in"),
    ("prompt.random", {"seed": -3}, "prompt.random: parameter seed must be an integer >= 0, got -3"),
])
def test_bad_parameters_name_method_parameter_value_and_expectation(name, params, message):
    with pytest.raises(TokenzipError) as error:
        tz.get_method(name, **params)
    assert message in str(error.value)


def test_good_parameters_pass():
    assert tz.get_method("kivi", bits=2, group=64).bits == 2
    assert tz.get_method("h2o", recent=1).recent == 1  # an int is a number
    assert tz.get_method("tome", protect=None, restore=True).restore == "nearest"
    assert tz.get_method("pitome", margin=None).margin is None
    import numpy as np

    assert tz.get_method("snapkv", window_size=np.int64(8)).window_size == 8


def test_every_registered_method_builds_with_its_defaults_and_declares_real_parameters():
    for cls in registered():
        cls()  # the defaults satisfy the declared types and ranges
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        declared_names = set(declared(cls, "bounds")) | set(declared(cls, "choices"))
        assert declared_names <= fields, (cls.stage, cls.name, declared_names - fields)


@pytest.mark.parametrize("name", ["snapkv", "tome", "llmlingua"])
def test_ratio_and_budget_together_are_refused(name):
    with pytest.raises(TokenzipError, match=r"give either ratio=0.5 \(the fraction of tokens removed\) or budget=5 "
                                            r"\(the tokens kept\), not both"):
        tz.get_method(name, ratio=0.5, budget=5)
    assert tz.get_method(name, budget=5).budget == 5


def test_wrappers_pass_only_the_size_that_was_set():
    adakv = tz.get_method("adakv", base="snapkv", budget=7)
    assert adakv.base.budget == 7 and adakv.base.ratio == 0
    kivi = tz.get_method("kivi", evict="snapkv", budget=9)
    assert kivi.evict.budget == 9 and kivi.evict.ratio == 0
    assert tz.get_method("decoding", base="knorm", ratio=0.25).base.ratio == 0.25
