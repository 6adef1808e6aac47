"""The layers stage on LLaVA (tiny random LlavaForConditionalGeneration): image tokens pruned, generation runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tokenzip as tz
from tokenzip.layers.runtime import attach_layers
from tokenzip.ops.attention import cls_attention
from tokenzip.testing import tiny_model

PROMPTS = ["<image> describe the picture of the blue house near the city river please",
           "<image> what is the magic number in this image? answer:"]
METHODS = ["fastv", "dart", "layers.random", "cls_attention"]


@pytest.fixture(scope="module")
def llava():
    model, processor = tiny_model("llava")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in PROMPTS]
    return model, processor, images


def generate(model, inputs, method=None):
    with torch.no_grad():
        if method is None:
            return model.generate(**inputs, max_new_tokens=5, do_sample=False)
        with tz.compress(model, method):
            return model.generate(**inputs, max_new_tokens=5, do_sample=False)


@pytest.mark.parametrize("name", METHODS)
def test_pruned_llava_generation_runs_batched_and_matches_batch_one(llava, name):
    model, processor, images = llava
    inputs = processor(images=images, text=PROMPTS, return_tensors="pt", padding=True)
    assert torch.equal(generate(model, inputs, tz.get_method(name, ratio=0.0)), generate(model, inputs))
    method = tz.get_method(name, ratio=0.5)
    together = generate(model, inputs, method)
    report = method.last_report
    assert report.candidates == [16, 16]  # the image tokens: 4 x 4 patches each
    assert report.kept == [n - 8 for n in report.input_tokens]
    for i in range(len(PROMPTS)):
        alone = generate(model, processor(images=[images[i]], text=[PROMPTS[i]], return_tensors="pt"), method)
        assert torch.equal(alone[0, -5:], together[i, -5:])


def test_cls_attention_prunes_image_tokens_before_the_language_model_by_vision_cls_attention(llava):
    model, processor, images = llava
    inputs = processor(images=images[:1], text=PROMPTS[:1], return_tensors="pt")
    seen = {}
    attention = model.model.vision_tower.encoder.layers[-1].self_attn

    def grab(module, args, kwargs, output):
        seen["x"] = kwargs.get("hidden_states", args[0] if args else None)

    hook = attention.register_forward_hook(grab, with_kwargs=True)
    method = tz.get_method("cls_attention", ratio=0.75)
    try:
        with torch.no_grad(), attach_layers(model, method) as runtime:
            model(**inputs)
    finally:
        hook.remove()
    assert method.last_report.tokens_per_layer[0] == method.last_report.input_tokens[0] - 12
    x = seen["x"]
    b, n, _ = x.shape
    split = lambda t: t.view(b, n, attention.num_heads, attention.head_dim).transpose(1, 2)  # noqa: E731
    with torch.no_grad():
        scores = cls_attention(split(attention.q_proj(x)), split(attention.k_proj(x)), attention.scale)[0, 1:]
    image_positions = (inputs["input_ids"][0] == model.config.image_token_id).nonzero().flatten()
    expected = image_positions[scores.argsort(descending=True, stable=True)[:4]]
    kept = set(runtime.state.position[0].tolist()) & set(image_positions.tolist())
    assert kept == set(expected.tolist())


def test_encoder_methods_do_not_apply_to_llava(llava):
    model, _, _ = llava
    with pytest.raises(tz.TokenzipError, match="tome does not support llava"):
        with tz.compress(model, tz.get_method("tome", ratio=0.5)):
            pass
    with pytest.raises(tz.TokenzipError, match="before the language model"):
        with tz.compress(model, tz.get_method("cls_attention", ratio=0.5, layers=(1,))):
            pass
    with pytest.raises(tz.TokenzipError, match="one layers method per model"):
        with tz.compress(model, tz.get_method("fastv", ratio=0.5), tz.get_method("dart", ratio=0.5)):
            pass
    assert model.config._attn_implementation == "sdpa"
