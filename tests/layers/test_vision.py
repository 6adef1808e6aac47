"""The layers stage on ViT and DINOv2 (tiny random models), and proportional attention by hand."""

from __future__ import annotations

import pytest
import torch

import tokenzip as tz
from tokenzip.layers.runtime import attach_layers

VISION_METHODS = ["tome", "pitome", "cls_attention", "zero_tprune", "dart", "layers.random"]


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(3, 3, 56, 56, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", ["vit", "dinov2"])
@pytest.mark.parametrize("name", VISION_METHODS)
def test_vision_ratio_zero_exact_and_batch_matches_single(request, pixels, family, name):
    model, _ = request.getfixturevalue(f"tiny_{family}")
    with torch.no_grad():
        ref = model(pixel_values=pixels).last_hidden_state
        with tz.compress(model, tz.get_method(name, ratio=0.0)):
            assert torch.equal(model(pixel_values=pixels).last_hidden_state, ref)
        method = tz.get_method(name, ratio=0.6)
        with tz.compress(model, method):
            together = model(pixel_values=pixels).last_hidden_state
            alone = model(pixel_values=pixels[2:3]).last_hidden_state
    assert together.shape == ref.shape
    assert abs(method.last_report.ratio - 0.6) < 0.02
    assert torch.allclose(together[2], alone[0], atol=1e-5)


def test_proportional_attention_matches_a_hand_computation(tiny_vit, pixels):
    """After tokens merge at layer 0, layer 1's attention must add log(size) to its logits."""
    model, _ = tiny_vit
    method = tz.get_method("tome", ratio=0.5, layers=(0,))
    attention = model.layers[1].attention
    seen = {}

    def grab(module, args, kwargs, output):
        seen["x"] = args[0] if args else kwargs["hidden_states"]
        seen["out"] = output[0]

    hook = attention.register_forward_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad(), attach_layers(model, method) as runtime:
            model(pixel_values=pixels)
    finally:
        hook.remove()
    size = runtime.state.size  # sizes after layer 0, unchanged since
    assert (size > 1).any()
    x = seen["x"]
    b, n, _ = x.shape
    heads, d = attention.num_attention_heads, attention.head_dim

    def split(t):
        return t.view(b, n, heads, d).transpose(1, 2)

    q, k, v = split(attention.q_proj(x)), split(attention.k_proj(x)), split(attention.v_proj(x))
    with torch.no_grad():
        logits = q @ k.transpose(-1, -2) * d**-0.5 + size.log()[:, None, None, :]
        weights = torch.softmax(logits, dim=-1)
        # the same as plain attention where every key/value is repeated `size` times
        hand = attention.o_proj((weights @ v).transpose(1, 2).reshape(b, n, heads * d))
    assert torch.allclose(seen["out"], hand, atol=1e-5)


def test_proportional_attention_off_means_no_bias(tiny_vit, pixels):
    model, _ = tiny_vit
    on = tz.get_method("tome", ratio=0.5)
    off = tz.get_method("tome", ratio=0.5, prop_attn=False)
    with torch.no_grad():
        with tz.compress(model, on):
            a = model(pixel_values=pixels).last_hidden_state
        with tz.compress(model, off):
            b = model(pixel_values=pixels).last_hidden_state
    assert not torch.allclose(a, b)


def test_cls_token_is_never_removed_or_merged(tiny_dinov2, pixels):
    model, _ = tiny_dinov2
    for name in VISION_METHODS:
        method = tz.get_method(name, ratio=0.8, restore=False)
        with torch.no_grad(), attach_layers(model, method) as runtime:
            model(pixel_values=pixels)
        assert runtime.state.position[:, 0].tolist() == [0, 0, 0], name
        assert runtime.state.size[:, 0].tolist() == [1.0, 1.0, 1.0], name
