"""A layers method inside a chunked prefill (issue 23, item 2): each chunk is the layers stage's input.

The reference is the same layers stage on the whole prefill: pruning the same tokens, the model must compute the
same thing (a kept token attends to the kept tokens before it, in every layer after the reduction) whether the
context is read in one pass or chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.kv.runtime import KVRuntime
from tokenzip.layers.base import LayersMethod, Step
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.testing import DECODER_FAMILIES


@dataclass
class DropOdd(LayersMethod):
    """Test method: after layer 1, every token at an odd position leaves (the same tokens whether the prefill is
    read whole or in chunks of an even size, and exactly ``ratio=0.5`` of them with nothing protected)."""

    name = "drop_odd"
    paper = "test"

    def default_layers(self, architecture: str, num_layers: int) -> tuple[int, ...]:
        return (1,)

    def reduce(self, step: Step) -> torch.Tensor:
        return step.prune((step.position % 2 == 0) | ~step.candidates)


def ids_of(n, seed=0):
    return torch.randint(5, 300, (1, n), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def prefill(model, ids, layers, kv=None):
    """A prefill with ``layers`` attached (and ``kv``'s runtime, chunked when it has a chunk_size): the decoder's
    output, the cache and the shared validity state."""
    from tokenzip.hooks import attach_method

    runtime = KVRuntime(model, kv)
    decoder, cache = runtime.adapter.decoder, new_cache(model)
    with attach_method(model, layers):
        if kv is None:
            out = decoder(input_ids=ids, use_cache=True, **cache_kwargs(decoder, cache))
            return out.last_hidden_state, cache
        with runtime.attached():
            out = decoder(input_ids=ids, use_cache=True, **cache_kwargs(decoder, cache))
    return out.last_hidden_state, cache


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_pruning_chunk_by_chunk_computes_what_pruning_the_whole_prefill_computes(tiny, family):
    """The same odd tokens pruned after layer 1, in 5 chunks of 20 (the kv method keeps everything): the last
    chunk's outputs and every layer's cached keys and values equal the whole prefill's, up to float rounding.
    Before the fix the chunks' later layers were masked as if they had no past (or the first chunk was taken for
    the whole prefill), and the sliding-window layers of gemma3 lost their input positions."""
    model, _ = tiny(family)
    ids = ids_of(100, seed=2)
    method = DropOdd(ratio=0.5, protect=0, protect_last=0)
    whole_out, whole = prefill(model, ids, method)
    kv = tz.get_method("snapkv", budget=10_000, chunk_size=20)
    chunk_out, chunked = prefill(model, ids, method, kv)
    report = method.last_report
    assert report.input_tokens == [100] and report.kept == [50]  # all five chunks, added up
    torch.testing.assert_close(chunk_out, whole_out[:, -chunk_out.shape[1]:], atol=2e-4, rtol=1e-4)
    assert chunk_out.shape[1] == 10  # the last chunk's kept tokens
    for i, (a, b) in enumerate(zip(chunked.layers, whole.layers)):
        assert a.keys.shape == b.keys.shape, i
        torch.testing.assert_close(a.keys, b.keys, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(a.values, b.values, atol=2e-4, rtol=1e-4)


def test_a_chunked_prefill_with_a_layers_method_takes_one_unpadded_row(tiny):
    model, tok = tiny("llama")
    enc = tok(["a b c " * 30, "a b " * 10], return_tensors="pt", padding=True)
    with pytest.raises(TokenzipError, match="one unpadded row"):
        with tz.compress(model, tz.get_method("fastv", ratio=0.3), tz.get_method("snapkv", ratio=0.5),
                         chunk_size=16):
            model.generate(**enc, max_new_tokens=2, do_sample=False)
