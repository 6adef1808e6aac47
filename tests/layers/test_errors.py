"""Bad input to the layers stage: clear TokenzipErrors, nothing half-applied."""

from __future__ import annotations

import pytest
import torch

import tokenzip as tz


def test_method_on_a_family_it_does_not_support(tiny_bert):
    model, tok = tiny_bert
    with pytest.raises(tz.TokenzipError, match="fastv does not support bert.*cls_attention"):
        with tz.compress(model, tz.get_method("fastv", ratio=0.5)):
            pass
    assert model.config._attn_implementation == "sdpa"


def test_a_method_naming_its_architectures_the_old_way_still_refuses_the_others():
    from dataclasses import dataclass

    from tokenzip.layers.base import LayersMethod

    with pytest.warns(DeprecationWarning, match="architectures"):
        @dataclass
        class DecoderOnly(LayersMethod):
            name = "decoder_only_example"
            kinds = ("decoder",)

    assert DecoderOnly.architectures == ("decoder",)
    DecoderOnly().check_architecture("decoder", "llama")
    with pytest.raises(tz.TokenzipError, match=r"decoder_only_example does not support bert models \(encoder\)"):
        DecoderOnly().check_architecture("encoder", "bert")


def test_unsupported_model():
    with pytest.raises(tz.TokenzipError, match="does not support Linear"):
        with tz.compress(torch.nn.Linear(2, 2), tz.get_method("tome", ratio=0.5)):
            pass


def test_unreachable_ratio_says_how_far_the_schedule_gets(tiny_vit):
    model, _ = tiny_vit
    with pytest.raises(tz.TokenzipError, match=r"removes at most 24 of 49 tokens \(49.0%\) over 1 layer"):
        with tz.compress(model, tz.get_method("tome", ratio=0.9, layers=(0,))), torch.no_grad():
            model(pixel_values=torch.randn(1, 3, 56, 56))


def test_input_shorter_than_the_protected_tokens(tiny_bert):
    model, tok = tiny_bert
    inputs = tok(["hello"], return_tensors="pt")
    with pytest.raises(tz.TokenzipError, match="fewer than the 8 leading"):
        with tz.compress(model, tz.get_method("cls_attention", ratio=0.5, protect=8)), torch.no_grad():
            model(**inputs)


def test_layer_out_of_range(tiny_bert):
    model, _ = tiny_bert
    with pytest.raises(tz.TokenzipError, match="has 4 layers"):
        with tz.compress(model, tz.get_method("tome", ratio=0.5, layers=(7,))):
            pass


def test_removed_needs_one_count_per_layer(tiny_bert):
    model, _ = tiny_bert
    with pytest.raises(tz.TokenzipError, match="one count per layer"):
        with tz.compress(model, tz.get_method("tome", removed=(3, 3), layers=(0, 1, 2))):
            pass
