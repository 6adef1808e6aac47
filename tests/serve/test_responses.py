"""Assembling a whole OpenAI response from stream chunks (tokenzip.serve.responses), as any engine's chunks come."""

from __future__ import annotations

import asyncio
from typing import Any

from tokenzip.serve.generate import TokenLogprob
from tokenzip.serve.responses import Shape, assemble


async def _chunks(items: list[dict[str, Any]]):
    for item in items:
        yield item


def test_chat_chunks_of_two_choices_become_two_messages() -> None:
    shape = Shape("chat")
    head = shape.head("m", stream=True)
    lp = [TokenLogprob("Hi", -0.5, [("Hi", -0.5), ("Yo", -1.0)], list(b"Hi"), 0)]
    chunks = [{**head, "choices": [shape.role_choice(0)]}, {**head, "choices": [shape.role_choice(1)]},
              {**head, "choices": [shape.chunk_choice(1, "B", None)]},
              {**head, "choices": [shape.chunk_choice(0, "Hi", lp)]},
              {**head, "choices": [shape.chunk_choice(0, " there", [])]},
              {**head, "choices": [shape.chunk_choice(0, None, None, "stop")]},
              {**head, "choices": [shape.chunk_choice(1, None, None, "length")]},
              {**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}]
    body = asyncio.run(assemble(_chunks(chunks)))
    assert body["object"] == "chat.completion" and body["id"] == head["id"] and body["usage"]["total_tokens"] == 7
    first, second = body["choices"]
    assert first["message"] == {"role": "assistant", "content": "Hi there", "refusal": None}
    assert first["finish_reason"] == "stop" and second["finish_reason"] == "length"
    assert second["message"]["content"] == "B" and second["logprobs"] is None
    assert first["logprobs"]["content"][0]["top_logprobs"][1] == {"token": "Yo", "logprob": -1.0, "bytes": [89, 111]}


def test_legacy_completion_logprobs_are_concatenated() -> None:
    shape = Shape("completions")
    head = shape.head("m", stream=True)
    a = [TokenLogprob("a", -0.1, [("a", -0.1)], list(b"a"), 0)]
    b = [TokenLogprob("bytes:\\xe2", -0.2, [("bytes:\\xe2", -0.2)], [0xE2], 1)]
    body = asyncio.run(assemble(_chunks([{**head, "choices": [shape.chunk_choice(0, "a", a)]},
                                         {**head, "choices": [shape.chunk_choice(0, "", b)]},
                                         {**head, "choices": [shape.chunk_choice(0, None, [], "stop")]}])))
    lp = body["choices"][0]["logprobs"]
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "a"
    assert lp == {"tokens": ["a", "bytes:\\xe2"], "token_logprobs": [-0.1, -0.2],
                  "top_logprobs": [{"a": -0.1}, {"bytes:\\xe2": -0.2}], "text_offset": [0, 1]}
