"""Needles for the needle-in-a-haystack family (RULER, Hsieh et al. 2024, arXiv 2404.06654)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tokenzip.bench.tasks import words as w
from tokenzip.bench.tasks.base import Question, Task, filler_render
from tokenzip.bench.tasks.haystack import HAYSTACKS, Filler
from tokenzip.errors import TokenzipError, unknown_name

VALUE_TYPES = ("number", "uuid", "word")


def check_value_type(value_type: str) -> None:
    if value_type not in VALUE_TYPES:
        raise unknown_name("needle value type", value_type, VALUE_TYPES)


def check_count(name: str, n: int, low: int = 1) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < low:
        raise TokenzipError(f"{name} must be an integer >= {low}, got {n!r}")


def instruction(value_type: str) -> str:
    return (f"Some special magic {value_type}s are hidden within the following text. Make sure to memorize it. "
            f"I will quiz you about the {value_type}s afterwards.\n")


def needle(key: str, value: str, value_type: str) -> str:
    return f"One of the special magic {value_type}s for {key} is: {value}."


def distinct(rng: random.Random, make, n: int) -> list[str]:
    """``n`` different values from ``make(rng)``."""
    out: list[str] = []
    while len(out) < n:
        v = make(rng)
        if v not in out:
            out.append(v)
    return out


def keys_and_values(rng: random.Random, n_keys: int, n_values: int, value_type: str) -> tuple[list[str], list[str]]:
    keys = distinct(rng, w.key_phrase, n_keys)
    values = distinct(rng, lambda r: w.value(r, value_type), n_values)
    if value_type == "word":  # a value must not be one of the keys
        while set(values) & set(keys):
            values = distinct(rng, lambda r: w.value(r, value_type), n_values)
    return keys, values


def ask_one(key: str, value: str, value_type: str) -> Question:
    return Question(f"What is the special magic {value_type} for {key} mentioned in the provided text?", [value],
                    f"The special magic {value_type} for {key} mentioned in the provided text is")


def ask_all(keys: list[str], values: list[str], value_type: str) -> Question:
    named = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
    return Question(f"What are all the special magic {value_type}s for {named} mentioned in the provided text?", values,
                    f"The special magic {value_type}s for {named} mentioned in the provided text are")


def layout(rng: random.Random, haystack: str, value_type: str, needles: list[str]):
    """``render``/``unit_parts`` for needles at random depths in a haystack; also the depths."""
    filler = Filler(haystack, rng)
    depths = [rng.random() for _ in needles]
    render, unit_parts = filler_render(instruction(value_type), filler, list(zip(depths, needles)), sep=filler.sep)
    return render, unit_parts, depths


@dataclass
class NeedleTask(Task):
    """Base of the niah tasks: key-value needles of a ``value`` type (number, uuid or word) hidden in a
    ``haystack`` (noise, prose, uuids or numbers), both checked. Answers of uuids get :meth:`uuid_tokens`."""

    haystack: str = "prose"
    value: str = "number"

    def __post_init__(self) -> None:
        if self.haystack not in HAYSTACKS:
            raise unknown_name("haystack", self.haystack, HAYSTACKS)
        check_value_type(self.value)
        self.check_counts()
        if self.value == "uuid":
            self.max_new_tokens = self.uuid_tokens()

    def check_counts(self) -> None:
        """Check the task's own counts (none here)."""

    def uuid_tokens(self) -> int:
        """The answer length for uuid values (one uuid: 40 tokens)."""
        return 40
