"""How a sample becomes model input: completion-style for base models, the chat template otherwise.

The context is what gets compressed; each question (with the text the answer starts with) follows
it. Base models (like Gemma 3 270M) get ``context`` then ``"\\nQuestion: ...\\nAnswer: <prefix>"``.
Models with a chat template get the context as the user turn; the end of the user turn and the
assistant header go after the question (the split kvpress's pipeline uses), so the context can be
prefilled and compressed without the question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenzip.bench.tasks.base import Sample
from tokenzip.errors import unknown_name

STYLES = ("auto", "completion", "chat")
_SPLIT = "\u241e"  # a character no tokenizer template produces, to split the rendered template


@dataclass
class Prompt:
    """Model input for one sample: the context (tokenized with special tokens, e.g. BOS), then each
    question and its answer prefix (tokenized without; fed right after the context)."""

    context: str
    questions: list[tuple[str, str]]


def resolve_style(tokenizer: Any, style: str) -> str:
    if style not in STYLES:
        raise unknown_name("prompt style", style, STYLES)
    if style != "auto":
        return style
    return "chat" if getattr(tokenizer, "chat_template", None) else "completion"


def adds_bos(tokenizer: Any) -> bool:
    """Whether tokenizing text (with special tokens) puts the BOS token first. SmolLM2's BOS is ``<|im_start|>``,
    which its template writes and its tokenizer does not add: stripping it would lose the first turn marker."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("x").input_ids
    return bos_id is not None and bool(ids) and ids[0] == bos_id


def format_sample(sample: Sample, tokenizer: Any, style: str = "auto") -> Prompt:
    """The exact text given to the model for ``sample`` (already formatted samples pass through)."""
    if sample.metadata.get("formatted"):
        return Prompt(sample.context, [(q.text, q.answer_prefix) for q in sample.questions])
    style = resolve_style(tokenizer, style)
    if style == "completion":
        return Prompt(sample.context, [(f"\nQuestion: {q.text}\nAnswer:", f" {q.answer_prefix}" if q.answer_prefix
                                        else "") for q in sample.questions])
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": sample.context + _SPLIT}], tokenize=False,
                                             add_generation_prompt=True)
    context, suffix = rendered.split(_SPLIT, 1)
    bos = getattr(tokenizer, "bos_token", None)
    if bos and context.startswith(bos) and adds_bos(tokenizer):  # the tokenizer adds it again
        context = context[len(bos):]
    return Prompt(context, [(f"\n\n{q.text}{suffix}", q.answer_prefix) for q in sample.questions])
