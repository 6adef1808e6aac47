"""The official openai client against a live server on the tiny llama: endpoints, streaming, usage, cache.

Answers compared with each other are greedy (``temperature=0``; the server samples at OpenAI's default 1.0)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

MODEL = "tiny-llama"
DOC = " ".join(f"Line {i}: the key {i * 7919 % 10007} opens the blue house by the river." for i in range(40))


def _usage(resp: Any) -> dict[str, Any]:
    return resp.usage.model_dump()


def test_models_and_health(client: Any, tiny_server: str) -> None:
    import openai

    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL  # GET /v1/models/{id}
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-9")
    assert err.value.body["code"] == "model_not_found"
    health = httpx.get(f"{tiny_server}/health").json()
    assert health["status"] == "ok" and health["compression"] == "kv:snapkv@0.5" and health["max_batch"] == 8


def test_completion_usage_and_stream_agree(client: Any) -> None:
    prompt = DOC + "\n\nWhich key opens the house?"
    resp = client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0)
    usage = _usage(resp)
    assert resp.object == "text_completion" and resp.choices[0].finish_reason in ("stop", "length")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 6
    comp = usage["compression"]
    assert comp["spec"] == "kv:snapkv@0.5"
    assert comp["context_tokens"] + comp["question_tokens"] == usage["prompt_tokens"]
    kv = comp["stages"][-1]
    assert kv["stage"] == "kv" and kv["unit"] == "entries" and kv["after"] < kv["before"]
    assert kv["removed"] == 1 - kv["after"] / kv["before"]
    assert comp["kv_bytes_held"] == kv["bytes_after"] < comp["kv_bytes_dense"]
    pieces = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=6, stream=True, temperature=0))
    assert "".join(p.choices[0].text for p in pieces) == resp.choices[0].text
    assert pieces[-1].choices[0].finish_reason == resp.choices[0].finish_reason


def test_chat_stream_with_usage_matches_plain(client: Any) -> None:
    messages = [{"role": "system", "content": DOC}, {"role": "user", "content": "Which key opens the house?"}]
    resp = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
    assert resp.object == "chat.completion" and resp.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, stream=True,
                                                 temperature=0, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == resp.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == resp.usage.prompt_tokens
    plain = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, stream=True,
                                                temperature=0))
    assert all(c.usage is None for c in plain)  # no usage chunk unless asked


def test_raw_stream_ends_with_done(tiny_server: str) -> None:
    body = {"model": MODEL, "prompt": "Hello there", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{tiny_server}/v1/completions", json=body, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_extra_body_compression_overrides_default(client: Any) -> None:
    resp = client.completions.create(model=MODEL, prompt=DOC + "\n\nWhich key?", max_tokens=3,
                                     extra_body={"compression": "kv : streaming_llm @ 0.75"})
    comp = _usage(resp)["compression"]
    assert comp["spec"] == "kv:streaming_llm@0.75"
    kv = comp["stages"][-1]
    assert kv["method"] == "kv:streaming_llm@0.75"
    assert 0.70 <= 1 - kv["after"] / kv["before"] <= 0.76
    none = client.completions.create(model=MODEL, prompt=DOC + "\n\nWhich key?", max_tokens=3,
                                     extra_body={"compression": "none"})
    comp = _usage(none)["compression"]  # no stage ran: the context is cached as it was prefilled
    assert comp["stages"] == [] and comp["kv_bytes_held"] == comp["kv_bytes_dense"] > 0


def test_second_question_hits_the_cache_and_answers_as_a_fresh_prefill(client: Any, tiny_server: str,
                                                                       tiny_app: Any) -> None:
    doc = DOC.replace("blue", "green")  # a document no other test used
    first = client.completions.create(model=MODEL, prompt=doc + "\n\nWhich key opens the house?", max_tokens=5,
                                      temperature=0)
    second = client.completions.create(model=MODEL, prompt=doc + "\n\nWhat is by the river?", max_tokens=5,
                                       temperature=0)
    u1, u2 = _usage(first), _usage(second)
    assert u1["compression"]["cache"] == "miss" and u1["prompt_tokens_details"]["cached_tokens"] == 0
    assert u2["compression"]["cache"] == "hit"
    assert u2["prompt_tokens_details"]["cached_tokens"] == u2["compression"]["context_tokens"] > 0
    assert u2["compression"]["stages"][-1]["cached"] is True
    chat = client.chat.completions.create(model=MODEL, max_tokens=3, messages=[
        {"role": "system", "content": doc}, {"role": "user", "content": "Which key?"}])
    chat2 = client.chat.completions.create(model=MODEL, max_tokens=3, messages=[
        {"role": "system", "content": doc}, {"role": "user", "content": "Which house?"}])
    assert chat.usage.model_dump()["compression"]["cache"] == "miss"
    assert chat2.usage.prompt_tokens_details.cached_tokens > 0
    metrics = httpx.get(f"{tiny_server}/metrics").text
    assert "tokenzip_cache_hits_total" in metrics and 'tokenzip_tokens_removed_total{stage="kv"}' in metrics
    # The same question with the cache emptied (a fresh prefill) gives the same answer.
    tiny_app.state.backend.cache.clear()
    again = client.completions.create(model=MODEL, prompt=doc + "\n\nWhat is by the river?", max_tokens=5,
                                      temperature=0)
    assert _usage(again)["compression"]["cache"] == "miss"
    assert again.choices[0].text == second.choices[0].text


def test_page_endpoint_reports_what_each_stage_kept_and_both_answers(tiny_server: str) -> None:
    text = "First sentence about cats. Second sentence about dogs. Third sentence about the key 42. " * 2
    r = httpx.post(f"{tiny_server}/v1/tokenzip/compress", timeout=120,
                   json={"text": text, "question": "Which key?", "compression": "prompt:head@0.5 | kv:snapkv@0.5"})
    assert r.status_code == 200, r.text
    data = r.json()
    prompt, kv = data["stages"]
    assert prompt["after"] < prompt["before"] and kv["after"] < kv["before"]
    assert data["kept_spans"] and all(0 <= a < b <= len(text) for a, b in data["kept_spans"])
    # The kv stage, per token: the kept fractions average to the stage's own count of entries kept.
    heat = data["kv"]
    fractions = [f for _, _, f in heat["tokens"]]
    # one fraction per token the kv stage read: its entries on every (compressed) layer of the tiny llama
    assert len(fractions) * len(heat["layers"]) == kv["before"] and heat["note"] is None
    assert abs(sum(fractions) / len(fractions) - kv["after"] / kv["before"]) < 1e-3
    assert min(fractions) == 0.0 and max(fractions) == 1.0  # some tokens evicted everywhere, some kept everywhere
    assert all(0 <= a <= b <= len(heat["text"]) for a, b, _ in heat["tokens"])
    assert heat["text"].startswith(data["compressed_text"].rstrip())
    answers = data["answers"]
    assert set(answers) == {"prompt", "compressed", "uncompressed"} and answers["prompt"].endswith("Answer:")
    assert all(isinstance(answers[k], str) for k in ("compressed", "uncompressed"))
    whole = httpx.post(f"{tiny_server}/v1/tokenzip/compress", timeout=120,
                       json={"text": text, "question": "Which key?", "compression": "none"}).json()
    assert whole["stages"] == [] and whole["answers"]["compressed"] == whole["answers"]["uncompressed"] \
        == answers["uncompressed"]
    page = httpx.get(f"{tiny_server}/").text
    assert "<script>" in page and "http" not in page.split("<script>")[1].split("fetch(")[0]


def test_page_endpoint_heat_map_leaves_out_layers_that_lost_entries_during_the_prefill(tiny_server: str) -> None:
    """A layers method (entries leave the layers after its reduction during the prefill) or a kv method with a
    chunk_size (every layer compressed during the prefill): the heat map covers only the layers that held every
    token before the kv stage, says which it left out, and is absent (with a note) when none is left; never a 500."""
    text = "The code for the amber locker is 4817. " * 6 + "The river floods in spring. " * 6
    url = f"{tiny_server}/v1/tokenzip/compress"
    layered = httpx.post(url, timeout=120, json={"text": text, "compression": "layers:fastv@0.3 | kv:snapkv@0.5"})
    assert layered.status_code == 200, layered.text
    heat = layered.json()["kv"]
    assert heat["layers"] == [0, 1] and "layers 2, 3 held fewer entries than tokens" in heat["note"]
    fractions = [f for _, _, f in heat["tokens"]]
    assert min(fractions) == 0.0 and max(fractions) == 1.0
    chunked = httpx.post(url, timeout=120, json={"text": text, "compression": "kv:snapkv:chunk_size=8@0.5"})
    assert chunked.status_code == 200, chunked.text
    data = chunked.json()
    assert data["kv"] is None and any(n.startswith("no kv heat map") for n in data["notes"])
    assert data["stages"][-1]["after"] < data["stages"][-1]["before"]


def test_layers_stage_is_served_with_kv(client: Any) -> None:
    doc = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4
    resp = client.completions.create(model=MODEL, prompt=doc + "\n\nWhat is the number?", max_tokens=3,
                                     extra_body={"compression": "layers:fastv@0.5 | kv:snapkv@0.5"})
    assert _usage(resp)["compression"]["source"] == "request"
    layers, kv = _usage(resp)["compression"]["stages"][-2:]
    assert layers["stage"] == "layers" and layers["after"] < layers["before"]
    assert kv["stage"] == "kv" and kv["after"] < kv["before"]


def test_a_layers_method_the_model_cannot_take_is_refused_up_front(client: Any) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="a\n\nb", max_tokens=2,
                                  extra_body={"compression": "layers:tome@0.3"})
    assert "tome does not support" in err.value.body["message"]


@pytest.mark.parametrize("spec", ["kv:snapkv@0.5", "layers:fastv@0.5 | kv:snapkv@0.5"])
def test_a_served_answer_is_the_torch_engines_own(client: Any, tiny_objects: tuple[Any, Any], spec: str) -> None:
    """A completion with a ``context`` at temperature 0 gives the text the torch engine gives alone from the context
    the pipeline compressed (``Pipeline.compress_context``, the one composition path), the prompt fed after the
    context's original positions; the second request answers from the cached context, alike."""
    import torch

    import tokenzip as tz
    from tokenzip.engines.answer import answer_from
    from tokenzip.engines.torch import TorchEngine

    prompt = "\nQuestion: Which key opens the blue house?\nAnswer:"
    context = DOC.replace("blue", "red")  # a context no other test cached
    served = [client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0,
                                        extra_body={"context": context, "compression": spec}) for _ in range(2)]
    model, tok = tiny_objects
    engine = TorchEngine(model, tok)
    ids = torch.tensor([engine.tokenize(context, True)])
    pre, compressed, records = tz.pipeline(spec).compress_context(model, tok, ids)
    alone = answer_from(engine, engine.hold(compressed), engine.tokenize(prompt, False), 12).text
    assert [r.choices[0].text for r in served] == [alone, alone] and alone.strip()
    first, second = (_usage(r)["compression"] for r in served)
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert [row["after"] for row in first["stages"]] == [r.after for r in records]
    assert first["kv_bytes_held"] == compressed.bytes and first["kv_bytes_dense"] == pre.bytes
