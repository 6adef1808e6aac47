"""Bench tests run tiny models on one torch thread (faster than two on a busy 2-core machine)."""

from __future__ import annotations

import pytest
import torch

from tokenzip.testing import tiny_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def tiny_count():
    from tokenzip.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)
