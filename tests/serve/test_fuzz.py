"""The server never answers 500 to a request (issue 23): generated request bodies against the live app.

Hypothesis draws bodies for the three POST endpoints from a mix of well-formed and broken shapes (fields of the
wrong type, out-of-range numbers, pipeline specs built from the real stage, method and parameter names with
random values, text with lone surrogates and control characters) and sends them through FastAPI's test client
to the app on the tiny llama. Every answer must be a 2xx or a 4xx with an OpenAI error object, never a 5xx, and
the server must answer a normal request afterwards. The examples are derandomized (the same ones every run) and
few enough to keep the test under a minute on one thread.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is missing: pip install 'tokenzip[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MODEL = "tiny-llama"
OK = {"model": MODEL, "prompt": "Hello world", "max_tokens": 2}


@pytest.fixture(scope="module")
def client(tiny_app: Any) -> Any:
    from fastapi.testclient import TestClient

    with TestClient(tiny_app, raise_server_exceptions=False) as c:
        yield c


def post(client: Any, path: str, body: Any) -> Any:
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, content=content, headers={"content-type": "application/json"})


def assert_answered(r: Any) -> None:
    """A 2xx, or a 4xx with an OpenAI error object; never a 5xx."""
    assert r.status_code < 500, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error) and error["message"], error


# --- item 3: the two 500s the issue found ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/v1/completions", dict(OK, compression="kv:kvzip:tokenizer=x@0.5")),
    ("/v1/tokenzip/compress", {"text": "some text to compress. " * 4, "compression": "kv:kvzip:tokenizer=x@0.5"}),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                              "compression": "kv:kvzip_fast:tokenizer=x@auto"}),
])
def test_a_parameter_only_code_can_fill_is_a_400_naming_it(client: Any, path: str, body: Any) -> None:
    r = post(client, path, body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "'tokenizer'" in message and "set from code" in message
    assert post(client, "/v1/completions", OK).status_code == 200


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", '{"model": "tiny-llama", "prompt": "a \\ud800 b", "max_tokens": 2}'),
    ("/v1/completions", '{"model": "tiny-llama", "prompt": "q", "context": "\\udfff", "max_tokens": 2}'),
    ("/v1/chat/completions", '{"model": "tiny-llama", "messages": [{"role": "user", "content": "\\ud83d"}]}'),
    ("/v1/tokenzip/compress", '{"text": "abc \\ud800 def"}'),
])
def test_a_lone_surrogate_is_a_400(client: Any, path: str, body: str) -> None:
    r = post(client, path, body)
    assert r.status_code == 400, r.text
    assert "not valid Unicode" in r.json()["error"]["message"]
    assert post(client, "/v1/completions", OK).status_code == 200


# --- the fuzz test ----------------------------------------------------------------------------------------------------

def _names() -> dict[str, Any]:
    """Method names per stage, and every ``(stage, method, parameter)`` grouped by the parameter's annotation
    (``int``, ``float``, ``bool``, ``str`` or ``object`` for anything else): a spec perturbs a parameter of each
    kind as often, so the few object parameters (KVzip's tokenizer, a wrapper's base) are not drowned out."""
    import dataclasses

    import tokenzip as tz
    from tokenzip.method import method_class
    from tokenzip.params import _hints, _simple_types

    out: dict[str, Any] = {"prompt": [], "layers": [], "kv": [], "by_type": {}}
    for row in tz.methods():
        if row["stage"] not in ("prompt", "layers", "kv"):
            continue
        out[row["stage"]].append(row["name"])
        cls = method_class(row["name"], row["stage"])
        hints = _hints(cls)
        for field in dataclasses.fields(cls):
            simple = _simple_types(hints.get(field.name)) if field.init else None
            type_name = simple[0][0].__name__ if simple else "object"
            out["by_type"].setdefault(type_name, []).append((row["stage"], row["name"], field.name))
    return out


NAMES = _names()
GOOD_SPECS = ["none", "kv:snapkv@0.5", "kv:kvzip@0.5", "kv:kvzip_fast@auto", "kv:kivi:bits=2", "prompt:extractive@0.5",
              "prompt:extractive:reorder=none@0.5", "layers:fastv@0.3", "layers:fastv@0.3 | kv:snapkv:chunk_size=8@0.5",
              "kv:kvzip_fast:chunk_size=8@auto", "kv:h2o:chunk_size=5@0.25", "prompt:llmlingua@0.3 | kv:tova@0.5",
              "kv:adakv:base=snapkv@0.5", "kv:streaming_llm:budget=8", "layers:dart@0.5 | kv:kvzip:chunk_size=16@0.5"]
WORDS = st.lists(st.sampled_from(["the", "key", "is", "4817", "é", "\n", "?", ".", "code", "river", "cat"]),
                 max_size=40).map(" ".join)
WEIRD = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\x00", "\ud800", "\udfff", "a" * 300, "\u202e"]))
TEXT = st.one_of(WORDS, WORDS, WEIRD)
NUMBER = st.one_of(st.integers(-3, 12), st.sampled_from([0, -1, 10**9, 2**63, 10**30]),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1.5, -0.1, 1e308]))
VALUE = st.one_of(NUMBER, st.sampled_from(["none", "true", "auto", "x", "kvzip", "snapkv", "nan", "1e400", ""]),
                  st.text(alphabet="abc01.-_", max_size=5))
ANY_JSON = st.recursive(st.one_of(st.none(), st.booleans(), NUMBER, TEXT),
                        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                        max_leaves=6)


@st.composite
def perturbed(draw: Any) -> str:
    """A real method with one parameter (of a kind drawn first, see :func:`_names`) given a value of any kind."""
    type_name = draw(st.sampled_from(sorted(NAMES["by_type"])))
    stage, name, param = draw(st.sampled_from(NAMES["by_type"][type_name]))
    ratio = draw(st.sampled_from(["", "@0.5", "@auto", "@0"]))
    return f"{stage}:{name}:{param}={draw(VALUE)}{ratio}"


@st.composite
def spec_items(draw: Any) -> str:
    """Anything shaped like a spec item: stages, names and parameters real or not, values of any kind."""
    stage = draw(st.sampled_from(["prompt", "layers", "kv", "gpu"]))
    name = draw(st.one_of(st.sampled_from(NAMES.get(stage) or ["x"]), st.text(max_size=6)))
    item = f"{stage}:{name}"
    keys = draw(st.lists(st.text(max_size=4), max_size=2))
    if keys:
        item += ":" + ",".join(f"{k}={draw(VALUE)}" for k in keys)
    if draw(st.booleans()):
        item += "@" + str(draw(VALUE))
    return item


SPEC = st.one_of(st.sampled_from(GOOD_SPECS), perturbed(), perturbed(),
                 st.lists(st.one_of(perturbed(), spec_items()), min_size=1, max_size=3).map(" | ".join))
WILD = st.one_of(TEXT, ANY_JSON, SPEC)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "developer"]),
                                 "content": st.one_of(TEXT, st.lists(st.fixed_dictionaries(
                                     {"type": st.just("text"), "text": TEXT}), max_size=2))})
# per endpoint: its fields, each with a well-formed value (required ones first: always present unless perturbed)
FIELDS = {
    "/v1/completions": {"model": st.just(MODEL), "prompt": WORDS, "max_tokens": st.integers(1, 4),
                        "compression": SPEC, "context": WORDS, "stop": st.lists(WORDS, max_size=4),
                        "stream": st.booleans(), "temperature": st.floats(0, 2), "n": st.just(1)},
    "/v1/chat/completions": {"model": st.just(MODEL), "messages": st.lists(MESSAGE, max_size=2).map(
                                 lambda m: m + [{"role": "user", "content": "and?"}]),
                             "max_completion_tokens": st.integers(1, 4), "compression": SPEC,
                             "stop": st.one_of(WORDS, st.lists(WORDS, max_size=4)), "stream": st.booleans(),
                             "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
                             "top_p": st.floats(0, 1)},
    "/v1/tokenzip/compress": {"text": WORDS.map(lambda t: t + " some words to compress."), "compression": SPEC,
                              "question": WORDS},
}
REQUIRED = {"/v1/completions": 3, "/v1/chat/completions": 3, "/v1/tokenzip/compress": 1}


@st.composite
def body_for(draw: Any, path: str) -> Any:
    """A request body for ``path``: a well-formed one (its required fields, some optional ones), with up to two
    fields given any value or left out; once in a while not an object at all, or not JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(ANY_JSON, st.binary(max_size=20)))
    fields = FIELDS[path]
    names = list(fields)
    body = {k: draw(fields[k]) for k in names[: REQUIRED[path]]}
    for k in draw(st.lists(st.sampled_from(names[REQUIRED[path]:]), max_size=3, unique=True)):
        body[k] = draw(fields[k])
    for k in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
        if draw(st.booleans()):
            body[k] = draw(WILD)
        else:
            body.pop(k, None)
    return body


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_generated_requests_never_get_a_500(client: Any, data: Any) -> None:
    path = data.draw(st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/tokenzip/compress"]))
    body = data.draw(body_for(path))
    if isinstance(body, dict) and isinstance(body.get("stream"), bool) and body["stream"]:
        with client.stream("POST", path, content=json.dumps(body),
                           headers={"content-type": "application/json"}) as r:
            r.read()
    else:
        content = body if isinstance(body, bytes) else json.dumps(body)
        r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert_answered(r)


def test_the_server_answers_after_the_fuzzing(client: Any) -> None:
    """Runs after the fuzz test (file order): the app still answers a normal request, and its health is ok."""
    r = post(client, "/v1/completions", OK)
    assert r.status_code == 200 and r.json()["choices"][0]["text"] is not None
    assert client.get("/health").json()["status"] == "ok"
