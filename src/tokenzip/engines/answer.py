"""Questions about a context answered through any engine (:class:`tokenzip.engines.base.Engine`): the
``tz.kv.answer`` protocol (prefill and compress once, query-agnostic, each question after the original context; its
loop is :func:`tokenzip.kv.questions.answer_each`) over the engine protocol, with the time to the first token of every
answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from tokenzip.engines.base import Engine
from tokenzip.kv.answer import KVAnswer
from tokenzip.kv.base import KVMethod
from tokenzip.kv.questions import Generated, answer_each
from tokenzip.kv.questions import generate_answer as answer_from

__all__ = ["EngineAnswer", "Generated", "answer", "answer_from"]


@dataclass
class EngineAnswer(KVAnswer):
    """A :class:`tokenzip.kv.KVAnswer` with the engine that gave it and its time to the first token (feeding the
    question included; for the first question, after the prefill and compression)."""

    engine: str = "torch"
    first_token_seconds: float = 0.0


def answer(engine: Engine, context: str, questions: str | Sequence[str], method: KVMethod | str | None = None,
           max_new_tokens: int = 32, answer_prefix: str = "", chunk_size: int | None = None,
           query_aware: bool = False) -> list[EngineAnswer]:
    """Prefill and compress ``context`` once with ``engine``, then answer each question from it (as
    :func:`tokenzip.kv.answer`; ``query_aware``: each question appended to the context before compression)."""
    answered = answer_each(engine, context, questions, method, query_aware, max_new_tokens, answer_prefix, chunk_size)
    return [EngineAnswer(**{f.name: getattr(got, f.name) for f in fields(got)}, engine=engine.name,
                         first_token_seconds=generated.first_token_seconds) for got, generated in answered]
