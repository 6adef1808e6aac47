"""The layers runtime is what ``models/`` types it as: :class:`tokenzip.models.stack.StackRuntime` (what the layer
hooks call) and :class:`tokenzip.models.attachment.AttachedRuntime` (what the model's attachment records). ``models/``
may not import ``layers/``, so the match is structural; these tests fail when a member is renamed on one side."""

from __future__ import annotations

import inspect

import torch

import tokenzip as tz
from tokenzip.layers.runtime import LayersRuntime, attach_layers
from tokenzip.models.attachment import AttachedMethod, AttachedRuntime, attachment
from tokenzip.models.stack import StackRuntime, TokenSlots
from tokenzip.testing import tiny_model


def members(protocol: type) -> dict[str, object]:
    """The protocol's declared members: name -> function, property or annotation."""
    out: dict[str, object] = dict(getattr(protocol, "__annotations__", {}))
    out.update({name: value for name, value in vars(protocol).items()
                if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))})
    return out


def test_the_layers_runtime_has_every_call_the_stack_hooks_make_with_the_same_parameters():
    for name, declared in members(StackRuntime).items():
        if inspect.isfunction(declared):
            given = getattr(LayersRuntime, name)
            assert list(inspect.signature(given).parameters) == list(inspect.signature(declared).parameters), name


def test_a_running_layers_runtime_is_the_stack_runtime_the_hooks_see(tiny_bert):
    model, tok = tiny_bert
    enc = tok(["a short text for the tiny encoder to read, with a few more words"], return_tensors="pt")
    method = tz.get_method("tome", ratio=0.5)
    with attach_layers(model, method) as runtime, torch.no_grad():
        model(**enc)
        for name in members(StackRuntime):
            assert hasattr(runtime, name), name
        assert runtime.method is method and all(hasattr(method, name) for name in members(AttachedMethod))
        assert runtime.steps and all(isinstance(step, int) for step in runtime.steps)
        state = runtime.state
        assert state is not None and state.changed is True  # tome merged tokens in this pass
        for name in members(TokenSlots):
            assert hasattr(state, name), name
        assert state.valid.dtype == torch.bool and state.position.shape == state.valid.shape


def test_the_attachment_records_the_runtimes_themselves():
    """A decoder with a layers and a kv method: the model's attachment holds both runtimes (not labels), each
    answering ``method`` as :class:`AttachedRuntime` declares."""
    model, tok = tiny_model("llama")
    fastv, knorm = tz.get_method("fastv", ratio=0.5), tz.get_method("knorm", ratio=0.5)
    with tz.compress(model, fastv, knorm):
        record = attachment(model)
        assert type(record.layers) is LayersRuntime and type(record.kv).__name__ == "KVRuntime"
        assert record.layers.method is fastv and record.kv.method is knorm
        for runtime in (record.layers, record.kv):
            assert all(hasattr(runtime, name) for name in members(AttachedRuntime))
    assert attachment(model) is None
