"""Pipeline spec grammar: parsing, canonical text, and the errors for bad specs."""

from __future__ import annotations

import pytest

import tokenzip as tz
from tokenzip import spec
from tokenzip.errors import TokenzipError


def test_full_spec_parses_into_one_method_per_stage() -> None:
    s = spec.parse("prompt:extractive@0.5 | layers:fastv@0.3 | kv:kivi:bits=2,evict=kvzip@0.5")
    assert [x.stage for x in s.stages] == ["prompt", "layers", "kv"]
    kv = s.build("kv")
    assert kv.name == "kivi" and kv.bits == 2 and kv.evict.name == "kvzip" and kv.ratio == 0.5
    assert s.build("layers").ratio == 0.3 and s.build("prompt").name == "extractive"
    assert s.build("kv") is not kv  # a fresh object each time: requests never share method state


@pytest.mark.parametrize("text, canonical", [
    ("kv:kvzip@0.5", "kv:kvzip@0.5"),
    ("  kv : kivi : evict=kvzip , bits=4 @ 0.5 ", "kv:kivi:evict=kvzip@0.5"),  # default bits=4 dropped
    ("kv:kivi:ratio=0.5,bits=2,evict=snapkv", "kv:kivi:bits=2,evict=snapkv@0.5"),
    ("kv:snapkv:budget=512", "kv:snapkv:budget=512"),
    ("kv:snapkv | prompt:head@0.25", "prompt:head@0.25 | kv:snapkv"),  # pipeline order
    ("kv:snapkv@0", "kv:snapkv"),
    ("kv:kvzip_fast:tolerance=0.2 @ AUTO", "kv:kvzip_fast:tolerance=0.2@auto"),  # the method picks the ratio
    ("none", "none"),
    ("", "none"),
])
def test_canonical_text_round_trips(text: str, canonical: str) -> None:
    parsed = spec.parse(text)
    assert str(parsed) == canonical
    assert spec.parse(str(parsed)) == parsed


def test_value_coercion() -> None:
    s = spec.parse("kv:expected_attention:use_covariance=true,n_future=256,sinks=2@0.5").get("kv")
    params = s.kwargs
    assert params == {"n_future": 256, "sinks": 2, "use_covariance": True}
    assert isinstance(params["n_future"], int) and params["use_covariance"] is True
    assert spec.parse("kv:pyramidkv:beta=2.5@0.5").get("kv").kwargs["beta"] == 2.5


def test_empty_spec_is_falsy_and_has_no_methods() -> None:
    s = spec.parse(None)
    assert not s and s.get("kv") is None and s.build("prompt") is None


@pytest.mark.parametrize("text, words", [
    ("kvv:snapkv@0.5", ["unknown pipeline stage 'kvv'", "kv"]),
    ("tokenizers:bpe", ["unknown pipeline stage 'tokenizers'"]),
    ("kv:snapk@0.5", ["unknown kv method 'snapk'", "snapkv"]),
    ("kv:fastv@0.5", ["unknown kv method 'fastv'"]),
    ("kv:snapkv@1.5", ["ratio", "1.5", "0 <= ratio < 1"]),
    ("kv:snapkv@-0.1", ["ratio"]),
    ("kv:snapkv@half", ["bad ratio 'half'", "budget=N"]),
    ("kv:snapkv@0.5 | kv:knorm@0.5", ["two kv methods", "evict="]),
    ("kv:snapkv:foo=1@0.5", ["no parameter 'foo'", "window_size"]),
    ("kv:snapkv:window_size@0.5", ["bad parameter 'window_size'", "key=value"]),
    ("kv:snapkv:window_size=4,window_size=8", ["given twice"]),
    ("kv:kivi:bits=3", ["parameter bits must be an integer, one of 2, 4, 8", "got 3"]),
    ("kv:snapkv:budget=0", ["budget", "integer >= 1"]),
    ("kv:snapkv:budget=64@0.5", ["both a ratio and a budget"]),
    ("kv:snapkv:ratio=0.5@0.5", ["ratio twice"]),
    ("kv:snapkv@0.5 |", ["empty stage"]),
    ("snapkv", ["bad stage 'snapkv'", "stage:method"]),
])
def test_bad_specs_raise_clear_errors(text: str, words: list[str]) -> None:
    with pytest.raises(TokenzipError) as err:
        spec.parse(text)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_non_string_spec_is_refused() -> None:
    with pytest.raises(TokenzipError, match="pipeline spec is a string"):
        spec.parse(0.5)  # type: ignore[arg-type]


def test_from_methods_matches_text() -> None:
    built = spec.from_methods(prompt="extractive@0.3", kv=tz.get_method("kivi", bits=2, evict="kvzip", ratio=0.5))
    assert built == spec.parse("prompt:extractive@0.3 | kv:kivi:bits=2,evict=kvzip@0.5")
    with pytest.raises(TokenzipError, match="expects a kv method"):
        spec.from_methods(kv=tz.get_method("fastv", ratio=0.5))


def test_auto_ratio_only_for_methods_that_pick_it() -> None:
    method = spec.parse("kv:compactor@auto").get("kv").build()
    assert method.ratio == "auto"
    assert str(spec.from_methods(kv=method)) == "kv:compactor@auto"
    with pytest.raises(TokenzipError, match="snapkv cannot choose its own ratio"):
        spec.parse("kv:snapkv@auto")


# --- issue 23: items 3, 4 and 8 (one value grammar; parameters only code can fill) -------------------------------

def _object_parameters():
    """Every (stage, method, parameter) whose annotation is not a plain int/float/bool/str: objects, names, tuples."""
    import dataclasses

    from tokenzip.method import method_class
    from tokenzip.params import _hints, _simple_types

    out = []
    for row in tz.methods():
        if row["stage"] not in spec.PIPELINE_STAGES:
            continue
        cls = method_class(row["name"], row["stage"])
        hints = _hints(cls)
        out += [(row["stage"], row["name"], f.name) for f in dataclasses.fields(cls)
                if f.init and f.name not in ("ratio", "budget") and _simple_types(hints.get(f.name)) is None]
    return out


@pytest.mark.parametrize("stage, name, param", _object_parameters())
def test_an_object_parameter_given_nonsense_text_is_refused_when_parsed(stage: str, name: str, param: str) -> None:
    """Item 3's class: a parameter no text can fill (kvzip's tokenizer) was accepted as the string 'x' and failed at
    run time ('str' object is not callable: a 500 in the server). Every parameter that is not a plain value either
    reads text into what it holds (a wrapper's base names a method) or is refused, with a message, here."""
    with pytest.raises(TokenzipError) as info:
        spec.parse(f"{stage}:{name}:{param}=xq_not_a_name@0.5")
    if param in getattr(tz.get_method(name, stage=stage), "from_code", ()):
        assert f"parameter {param!r} is set from code" in str(info.value)


def test_code_only_parameters_are_refused_in_every_text_and_kept_from_code() -> None:
    from tokenzip.bench.stages import build_method

    for text in ("kv:kvzip:tokenizer=x@0.5", "kv:kvzip_fast:tokenizer=none@auto"):
        with pytest.raises(TokenzipError, match="'tokenizer' is set from code"):
            spec.parse(text)
    with pytest.raises(TokenzipError, match="'tokenizer' is set from code"):
        build_method("kv", "kvzip:tokenizer=x", 0.5)  # bench --methods
    tok = object()
    assert tz.get_method("kvzip", ratio=0.5, tokenizer=tok).tokenizer is tok  # from code it is what it is for


@pytest.mark.parametrize("method", ["extractive", "longllmlingua"])
def test_reorder_none_is_text_in_every_grammar(method: str) -> None:
    """Item 4: ``none`` was read as None in a spec (and refused) but as the text "none" by bench: a str parameter
    keeps its text everywhere; an optional one reads none as None."""
    from tokenzip.bench.stages import build_method
    from tokenzip.method import method_class
    from tokenzip.params import from_text, parse_value

    parsed = spec.parse(f"prompt:{method}:reorder=none@0.5")
    assert parsed.build("prompt").reorder == "none"
    assert str(parsed) == f"prompt:{method}:reorder=none@0.5" and spec.parse(str(parsed)) == parsed
    assert build_method("prompt", f"{method}:reorder=none", 0.5).reorder == "none"
    assert from_text(method_class(method, "prompt"), {"reorder": "none"}) == {"reorder": "none"}
    assert parse_value("none", int | None) is None and parse_value("none", str) == "none"
    assert spec.parse("kv:snapkv:chunk_size=none@0.5").build("kv").chunk_size is None


@pytest.mark.parametrize("text, words", [
    ("kv:kivi:bits=4.0", ["bits must be an integer", "4.0"]),  # was accepted (dropped as the default 4)
    ("kv:kivi:bits=8.0", ["bits must be an integer", "8.0"]),
    ("kv:snapkv:window_size=1000000000000000000000000000000@0.5", ["window_size must fit a 64-bit integer"]),
    ("kv:snapkv:budget=100000000000000000000", ["budget", "64 bits"]),
    ("kv:snapkv:window_size=nan@0.5", ["window_size must be an integer"]),
])
def test_values_a_method_cannot_take_are_refused_alike(text: str, words: list[str]) -> None:
    with pytest.raises(TokenzipError) as info:
        spec.parse(text)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
