"""Shared fixtures: tiny models are built once per session; real models once per session too."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma 3 270M (slow tests only)."""
    import tokenzip as tz

    return tz.load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def minilm():
    import tokenzip as tz

    return tz.load_model("minilm-l6")
