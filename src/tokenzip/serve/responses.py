"""OpenAI response bodies: stream chunks, and a whole response assembled from them.

:class:`Shape` knows how one endpoint writes a choice (``chat.completion`` puts text in ``message`` /
``delta.content`` and log-probabilities in ``logprobs.content``; the legacy ``text_completion`` in ``text``
and the ``tokens``/``token_logprobs``/``top_logprobs``/``text_offset`` lists). :func:`assemble` turns the chunks
of any backend into the response a non-streaming client gets, so a backend writes its output once, as chunks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tokenzip.serve.generate import TokenLogprob


@dataclass(frozen=True)
class Shape:
    """How one endpoint writes its responses."""

    endpoint: str  # "chat" or "completions"

    @property
    def chat(self) -> bool:
        return self.endpoint == "chat"

    def head(self, model: str, stream: bool) -> dict[str, Any]:
        """``id``, ``object``, ``created``, ``model`` of a new response."""
        prefix, obj = ("chatcmpl", "chat.completion") if self.chat else ("cmpl", "text_completion")
        return {"id": f"{prefix}-{uuid.uuid4().hex[:24]}", "object": f"{obj}.chunk" if stream and self.chat else obj,
                "created": int(time.time()), "model": model}

    def chunk_choice(self, index: int, text: str | None, logprobs: list[TokenLogprob] | None = None,
                     finish: str | None = None) -> dict[str, Any]:
        """One choice of a stream chunk (``text`` None with ``finish`` set: the choice's last chunk)."""
        body = {"delta": {} if text is None else {"content": text}} if self.chat else {"text": text or ""}
        return {"index": index, **body, "logprobs": self.logprobs(logprobs), "finish_reason": finish}

    def role_choice(self, index: int) -> dict[str, Any]:
        """A chat stream's first chunk for a choice: the role."""
        return {"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}

    def logprobs(self, items: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if items is None:
            return None
        if self.chat:
            return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes,
                                 "top_logprobs": [{"token": s, "logprob": v, "bytes": _bytes_of(s)}
                                                  for s, v in t.top]} for t in items], "refusal": None}
        return {"tokens": [t.token for t in items], "token_logprobs": [t.logprob for t in items],
                "top_logprobs": [dict(t.top) for t in items], "text_offset": [t.offset for t in items]}


def _bytes_of(token: str) -> list[int]:
    if token.startswith("bytes:"):
        return [int(h, 16) for h in token[len("bytes:"):].split("\\x")[1:]]
    return list(token.encode())


def _merge_logprobs(into: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    if new is None:
        return into
    if into is None:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in new.items()}
    for key, value in new.items():
        if isinstance(value, list):
            into.setdefault(key, []).extend(value)
    return into


async def assemble(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The whole response from a stream's chunks (chat or legacy completions): each choice's text, log-probabilities
    and finish reason, and the usage of the last chunk that has one."""
    head: dict[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    async for chunk in chunks:
        head = head or {k: v for k, v in chunk.items() if k in ("id", "created", "model", "system_fingerprint")}
        chat = chunk.get("object", "").startswith("chat")
        for c in chunk.get("choices", []):
            entry = choices.setdefault(c["index"], {"index": c["index"], "text": "", "logprobs": None,
                                                    "finish_reason": None, "chat": chat})
            entry["text"] += (c.get("delta") or {}).get("content") or "" if chat else c.get("text") or ""
            entry["logprobs"] = _merge_logprobs(entry["logprobs"], c.get("logprobs"))
            entry["finish_reason"] = c.get("finish_reason") or entry["finish_reason"]
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
    out = []
    for index in sorted(choices):
        c = choices[index]
        if c.pop("chat"):
            out.append({"index": index, "message": {"role": "assistant", "content": c["text"], "refusal": None},
                        "logprobs": c["logprobs"], "finish_reason": c["finish_reason"]})
        else:
            out.append(c)
    chat = bool(out) and "message" in out[0]
    return {**(head or {}), "object": "chat.completion" if chat else "text_completion", "choices": out,
            "usage": usage}
