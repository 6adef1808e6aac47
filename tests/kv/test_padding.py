"""A left-padded row is scored and compressed exactly as the same row alone, on every decoder family."""

import pytest
import torch

import tokenzip as tz
from tokenzip.kv.runtime import KVRuntime, target_layers
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.testing import DECODER_FAMILIES

LONG = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4
SHORT = "A quick brown fox is 271828 in the house. The blue tree."


def _scores(model, enc, method):
    """Per target layer, the method's scores (B, H_kv, N) from a captured prefill of ``enc``."""
    runtime = KVRuntime(model, None, window=method.query_window(), received=method.wants_received())
    cache = new_cache(model)
    with torch.no_grad(), runtime.attached():
        positions = (enc.attention_mask.cumsum(-1) - 1).clamp_min(0)  # as generate() numbers a left-padded row
        runtime.adapter.decoder(input_ids=enc.input_ids, attention_mask=enc.attention_mask, position_ids=positions,
                                use_cache=True, **cache_kwargs(runtime.adapter.decoder, cache))
    return {i: method.masked_scores(runtime.context(cache, i)) for i in target_layers(runtime.adapter, False)}


@pytest.mark.parametrize("family", DECODER_FAMILIES)
@pytest.mark.parametrize("name", ["snapkv", "knorm"])
def test_padded_row_scores_as_alone(tiny, family, name):
    model, tok = tiny(family)
    method = tz.get_method(name, ratio=0.5, **({"window_size": 8} if name == "snapkv" else {}))
    batch = tok([LONG, SHORT], return_tensors="pt", padding=True)
    alone = tok([SHORT], return_tensors="pt")
    n = alone.input_ids.shape[1]
    assert batch.attention_mask[1].sum() == n < batch.input_ids.shape[1]  # the short row is padded
    padded, single = _scores(model, batch, method), _scores(model, alone, method)
    for i, scores in single.items():
        row = padded[i][1, :, -n:]
        assert torch.allclose(row, scores[0], rtol=1e-5, atol=1e-6), (family, name, i, (row - scores[0]).abs().max())
        keep = method.kept(n)
        assert torch.equal(row.topk(keep, dim=-1).indices.sort(-1).values,
                           scores[0].topk(keep, dim=-1).indices.sort(-1).values), (family, name, i)


def test_tiny_key_norms_are_spread(tiny):
    """Norm-based scores are not decided by rounding: the tiny Gemma 3's keys differ in length, and the
    entry kept last stands clear of the first one dropped."""
    model, tok = tiny("gemma3")
    method = tz.get_method("knorm", ratio=0.5)
    enc = tok([SHORT], return_tensors="pt")
    for s in _scores(model, enc, method).values():
        ranked = s[0].sort(-1, descending=True).values
        k = method.kept(enc.input_ids.shape[1])
        assert float(s[0].std(-1).min()) > 0.05
        assert float((ranked[:, k - 1] - ranked[:, k]).min()) > 1e-4
