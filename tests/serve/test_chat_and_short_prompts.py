"""Chat formatting (the tokenizer's template, else the documented fallback with its turn markers as stops) and
compression where it pays (a short prompt is answered whole, exactly as with ``compression: "none"``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tokenzip.serve.generate import Detokenizer
from tokenzip.serve.local import live_server
from tokenzip.serve.split import TURN_MARKERS

MODEL = "tiny-llama"
TEMPLATE = ("{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>{% endfor %}"
            "{% if add_generation_prompt %}<bos>assistant\n{% endif %}")
DOC = " ".join(f"Line {i}: the key {i * 7919 % 10007} opens the blue house by the river." for i in range(40))


class _Pieces:
    """A tokenizer stand-in whose tokens are given text pieces."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.pieces[i] for i in ids)


@pytest.mark.parametrize("pieces, text", [
    ([" Apples", ",", " pears", ".", "\n\n", "User", ":", " more"], " Apples, pears."),
    ([" Yes", ".", "\n", "Assistant", ":", " no"], " Yes."),
    ([" Fine", ".  ", "\n"], " Fine.  \n"),  # no marker: trailing whitespace is sent at the end
])
def test_turn_markers_cut_the_answer_and_the_blank_line_before_them(pieces: list[str], text: str) -> None:
    detok = Detokenizer(_Pieces(pieces), [], TURN_MARKERS)
    streamed = "".join(detok.push(i) for i in range(len(pieces)) if not detok.stopped) + detok.flush()
    assert streamed == detok.text == text
    assert detok.stopped == ("User" in pieces or "Assistant" in pieces)


def test_a_user_stop_is_cut_exactly_and_keeps_whitespace() -> None:
    detok = Detokenizer(_Pieces(["a ", "b\n", "STOP", "c"]), ["STOP"])
    streamed = "".join(detok.push(i) for i in range(3)) + detok.flush()
    assert streamed == detok.text == "a b\n" and detok.stopped


@pytest.fixture(scope="module")
def templated() -> Iterator[tuple[str, Any]]:
    """The tiny llama whose tokenizer has a chat template (an instruct model's case)."""
    from tokenzip.serve import build_app
    from tokenzip.testing import tiny_model

    model, tok = tiny_model("llama")
    tok.chat_template = TEMPLATE
    app = build_app(MODEL, compression="kv:snapkv@0.5", min_context_tokens=64, model_objects=(model, tok))
    with live_server(app) as url:
        yield url, tok


def test_the_chat_template_is_used_and_its_end_of_turn_ends_the_answer(templated: tuple[str, Any]) -> None:
    url, tok = templated
    messages = [{"role": "system", "content": DOC}, {"role": "user", "content": "Which key opens the house?"}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 6, "temperature": 0}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert r["usage"]["prompt_tokens"] == len(tok(rendered, add_special_tokens=False).input_ids)
    comp = r["usage"]["compression"]
    assert comp["spec"] == "kv:snapkv@0.5" and comp["context_tokens"] >= 64  # the system text is the context
    again = httpx.post(f"{url}/v1/chat/completions", json=dict(body, messages=[
        messages[0], {"role": "user", "content": "Which house?"}]), timeout=120).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == comp["context_tokens"]
    # The template's end of turn (the tokenizer's eos token) ends the answer: forced first, nothing is generated.
    ended = httpx.post(f"{url}/v1/chat/completions", json=dict(body, logit_bias={str(tok.eos_token_id): 100}),
                       timeout=120).json()
    assert ended["choices"][0]["message"]["content"] == "" and ended["choices"][0]["finish_reason"] == "stop"
    assert ended["usage"]["completion_tokens"] == 0


def test_a_short_prompt_under_the_default_spec_is_answered_as_with_none(tiny_server: str) -> None:
    for path, body in (("completions", {"prompt": "What is the capital of France?"}),
                       ("chat/completions", {"messages": [{"role": "user", "content": "What is the capital?"}]}),
                       ("completions", {"prompt": "A short document.\n\nAnd its question?"})):
        body = dict(body, model=MODEL, max_tokens=8, temperature=0)
        default = httpx.post(f"{tiny_server}/v1/{path}", json=body, timeout=120).json()
        none = httpx.post(f"{tiny_server}/v1/{path}", json=dict(body, compression="none"), timeout=120).json()
        assert default["choices"] == none["choices"]
        comp = default["usage"]["compression"]
        assert comp["spec"] == "none" and comp["requested"] == "kv:snapkv@0.5" and comp["source"] == "default"
        assert "min_context_tokens" in comp["skipped"] and comp["stages"] == [] and comp["cache"] == "none"
        assert none["usage"]["compression"]["skipped"] is None and none["usage"]["compression"]["source"] == "request"
        # Asked for by the request, the spec applies whatever the length.
        asked = httpx.post(f"{tiny_server}/v1/{path}", json=dict(body, compression="kv:snapkv@0.5"),
                           timeout=120).json()["usage"]["compression"]
        assert asked["spec"] == "kv:snapkv@0.5" and asked["stages"][-1]["after"] < \
            asked["stages"][-1]["before"]


def test_a_long_context_gets_the_default_spec_and_the_cache(tiny_server: str) -> None:
    body = {"model": MODEL, "prompt": DOC.replace("blue", "grey") + "\n\nWhich key?", "max_tokens": 2}
    comp = httpx.post(f"{tiny_server}/v1/completions", json=body, timeout=120).json()["usage"]["compression"]
    assert comp["spec"] == "kv:snapkv@0.5" and comp["skipped"] is None and comp["cache"] == "miss"
    assert comp["context_tokens"] >= 64
