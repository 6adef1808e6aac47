"""How a request is cut into a reusable context and a question, and how chat messages become text.

The rule (the same for the context cache, the prompt stage and the proxy): **the question is the last
paragraph** (the text after the last blank line) of the last user message (chat) or of the prompt
(completions); **everything before it is the context**: earlier messages (system included), the template
markup around them, and the paragraphs of the last user message before its last blank line. A completion
request may instead give the context explicitly in a ``context`` field: then the prompt is the question
and the model reads ``context + prompt``. A request whose context is empty (one paragraph, one message) is
answered whole, with nothing cached.

Chat messages are rendered with the tokenizer's chat template when it has one (instruct models; the
template's end-of-turn token, the tokenizer's ``eos_token``, ends the answer). Otherwise (base models such as
Gemma 3 270M, the tiny test models) with this completion-style template::

    {system content}\\n\\n          (system and developer messages)
    User: {content}\\n\\n
    Assistant: {content}\\n\\n
    Assistant:                     (the generation prompt)

whose turn markers (``TURN_MARKERS``: a new line starting ``User:`` or ``Assistant:``) are stop sequences of
every chat answer, besides the request's own ``stop``: a base model that goes on writing the next turn is
cut there, and the blank line before the marker is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARAGRAPH = "\n\n"
TURN_MARKERS = ("\nUser:", "\nAssistant:")


def split_paragraph(text: str) -> tuple[str, str]:
    """``(before, last)``: ``last`` is the text after the last blank line that is followed by text."""
    end = len(text.rstrip())
    cut = text.rfind(PARAGRAPH, 0, end)
    while cut > 0 and text[cut - 1] == "\n":  # a run of newlines: cut after the whole run
        cut -= 1
    if cut < 0 or not text[:cut].strip():
        return "", text
    stop = cut
    while stop < len(text) and text[stop] == "\n":
        stop += 1
    return text[:stop], text[stop:]


def fallback_template(messages: list[dict[str, str]]) -> str:
    """The completion-style rendering used when the tokenizer has no chat template."""
    out = []
    for m in messages:
        if m["role"] in ("system", "developer"):
            out.append(m["content"] + PARAGRAPH)
        else:
            out.append(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}{PARAGRAPH}")
    return "".join(out) + "Assistant:"


@dataclass
class Prompt:
    """A request's prompt: documents the prompt stage may compress, the question, and how to render them.

    ``documents`` are the context's texts in order (message contents for chat, one text for completions).
    ``render(documents)`` gives ``(context_text, question_text)`` for (possibly compressed) documents.
    """

    documents: list[str]
    question: str  # the question's own text (given to question-aware prompt methods)
    endpoint: str  # "chat" or "completion": the OpenAI endpoint it came from
    messages: list[dict[str, str]] = field(default_factory=list)
    templated: bool = False  # rendered text carries its own special tokens (chat template)
    tokenizer: Any = None

    def render(self, documents: list[str] | None = None) -> tuple[str, str]:
        docs = self.documents if documents is None else documents
        if self.endpoint == "completion":
            return (docs[0] if docs else ""), self.question
        return _render_chat(self, docs)

    def chat_messages(self, documents: list[str]) -> list[dict[str, str]]:
        """Chat messages with the documents replaced (what the proxy forwards)."""
        msgs = [dict(m) for m in self.messages]
        last = _last_user(msgs)
        docs = list(documents)
        has_head = len(docs) > last  # the last user message had paragraphs before its question
        for i in range(last):
            msgs[i]["content"] = docs[i]
        msgs[last]["content"] = (docs[last] if has_head else "") + self.question
        return msgs


def _last_user(messages: list[dict[str, str]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            return i
    return len(messages) - 1


def _render_chat(p: Prompt, documents: list[str]) -> tuple[str, str]:
    msgs = p.chat_messages(documents)
    last = _last_user(msgs)
    if p.templated:
        full = p.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        full = fallback_template(msgs)
    if last == 0 and len(documents) == 0:
        return "", full
    content = msgs[last]["content"]
    pos = full.rfind(content)
    if pos < 0:  # the template changed the content: no split, no cache
        return "", full
    cut = pos + len(content) - len(p.question)
    return full[:cut], full[cut:]


def completion_prompt(prompt: str, context: str | None = None) -> Prompt:
    """A completion's prompt: ``context`` when given, else the prompt cut at its last blank line."""
    if context is not None:
        return Prompt([context] if context else [], prompt, "completion")
    before, question = split_paragraph(prompt)
    return Prompt([before] if before else [], question, "completion")


def chat_prompt(messages: list[dict[str, str]], tokenizer: Any = None) -> Prompt:
    """A chat request's prompt: earlier message contents and the last user message's head are documents."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    last = _last_user(msgs)
    head, question = split_paragraph(msgs[last]["content"])
    docs = [m["content"] for m in msgs[:last]] + ([head] if head else [])
    templated = bool(tokenizer is not None and getattr(tokenizer, "chat_template", None))
    return Prompt(docs, question, "chat", msgs, templated, tokenizer)
