"""Tiny models for the layers-stage tests, built once per session."""

from __future__ import annotations

import pytest

from tokenzip.testing import tiny_model


@pytest.fixture(scope="session")
def tiny_bert():
    return tiny_model("bert")


@pytest.fixture(scope="session")
def tiny_vit():
    return tiny_model("vit")


@pytest.fixture(scope="session")
def tiny_dinov2():
    return tiny_model("dinov2")
