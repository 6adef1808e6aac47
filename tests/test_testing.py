"""Every tiny family loads and runs a forward pass; decoder families generate."""

import numpy as np
import pytest
import torch
from PIL import Image

from tokenzip.errors import TokenzipError
from tokenzip.testing import DECODER_FAMILIES, FAMILIES, tiny_model


def _image(seed=0, size=40):
    return Image.fromarray((np.random.RandomState(seed).rand(size, size, 3) * 255).astype("uint8"))


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_decoder_generates(family):
    model, tok = tiny_model(family)
    enc = tok(["the magic number is 42", "hello"], return_tensors="pt", padding=True)
    assert enc.input_ids[1, 0] == tok.pad_token_id  # left padding
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape == (2, enc.input_ids.shape[1] + 5)
    assert model.config._attn_implementation == "sdpa"


def test_gemma3_has_sliding_and_global_layers():
    model, _ = tiny_model("gemma3")
    assert set(model.config.layer_types) == {"sliding_attention", "full_attention"}


def test_models_are_deterministic():
    a, _ = tiny_model("llama")
    b, _ = tiny_model("llama")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_bert_forward():
    model, tok = tiny_model("bert")
    enc = tok(["hello world", "the cat sat"], return_tensors="pt", padding=True)
    assert enc.input_ids[0, 0] == tok.cls_token_id
    assert model(**enc).last_hidden_state.shape == (2, enc.input_ids.shape[1], 64)


@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_vision_forward(family):
    model, proc = tiny_model(family)
    pixels = proc(images=[_image(0), _image(1)], return_tensors="pt").pixel_values
    assert model(pixel_values=pixels).last_hidden_state.shape == (2, 1 + (56 // 8) ** 2, 64)


def test_llava_generates():
    model, proc = tiny_model("llava")
    inputs = proc(images=[_image(0), _image(1)], text=["<image> describe", "<image> the cat is"],
                  return_tensors="pt", padding=True)
    n_image = (inputs.input_ids == model.config.image_token_index).sum(1)
    assert n_image.tolist() == [16, 16]
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs.input_ids.shape[1] + 4


def test_unknown_family():
    with pytest.raises(TokenzipError, match="llama"):
        tiny_model("gpt5")


def test_all_families_listed():
    assert set(FAMILIES) == {"llama", "qwen2", "qwen3", "mistral", "gemma3", "olmo2", "phi3", "bert", "vit", "dinov2",
                             "llava"}
