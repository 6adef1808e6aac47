"""Shared fixtures: tiny models are built once per session; real models once per session too."""

from __future__ import annotations

import pytest
import torch

# One thread: on a loaded 2-core machine two threads made tests/kv about 5x slower (30.6 s vs 158.7 s).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma 3 270M (slow tests only)."""
    import tokenzip as tz

    return tz.load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct (slow tests only): Llama architecture, 30 full-attention layers."""
    import tokenzip as tz

    return tz.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def minilm():
    import tokenzip as tz

    return tz.load_model("minilm-l6")


@pytest.fixture(scope="module")
def tiny():
    """``tiny(family)``: a tiny seeded model and its tokenizer, built once per test module."""
    from tokenzip.testing import tiny_model

    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = tiny_model(family)
        return cache[family]

    return get
