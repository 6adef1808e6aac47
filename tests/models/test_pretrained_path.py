"""The loading path users take: a tiny model saved to disk and loaded back through ``tz.load_model``
(``from_pretrained``), so a change in transformers' loading defaults shows without real weights."""

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.models.dinov2 import load_dinov2
from tokenzip.models.loading import pretrained_defaults
from tokenzip.testing import DECODER_FAMILIES, tiny_model

TEXT = "The special magic number is 482913. The cat jumps over the lazy dog near the river. " * 4
QUESTION = "\nQuestion: What is the special magic number?\nAnswer: The special magic number is"


def _saved(family, directory):
    model, tok = tiny_model(family)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return model, tok


def _kernelized(model):
    return bool(getattr(model, "use_kernels", False))


def _generate(model, enc, method=None):
    if method is None:
        return model.generate(**enc, max_new_tokens=6, do_sample=False)
    with tz.compress(model, method):
        return model.generate(**enc, max_new_tokens=6, do_sample=False)


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_saved_decoder_loads_back_and_compresses_alike(tmp_path, family):
    original, tok = _saved(family, tmp_path)
    model, loaded_tok = tz.load_model(str(tmp_path))
    assert type(model) is type(original)
    assert not model.training and not _kernelized(model)  # transformers' torch modules, not hub kernels
    assert model.config._attn_implementation == "sdpa"
    # the ids of the saved tokenizer: AutoTokenizer may load another class for the model type (a qwen2 config
    # gets Qwen2's digit splitting), which is transformers' business, not the model's
    enc = tok(TEXT + QUESTION, return_tensors="pt")
    assert loaded_tok.decode(enc.input_ids[0], skip_special_tokens=True) == TEXT + QUESTION
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, original(**enc).logits)
    reference = _generate(model, enc)
    assert torch.equal(_generate(model, enc, tz.get_method("snapkv", ratio=0.0)), reference)
    # the hooks act on the loaded model exactly as on the model it was saved from
    method = tz.get_method("snapkv", ratio=0.5)
    assert torch.equal(_generate(model, enc, method), _generate(original, enc, method))
    pre = tz.kv.prefill(model, loaded_tok, TEXT, [method])
    assert pre.compress(method).bytes < pre.bytes


def test_saved_encoder_loads_back(tmp_path):
    original, tok = _saved("bert", tmp_path)
    model, loaded_tok = tz.load_model(str(tmp_path))
    assert type(model).__name__ == "BertModel" and not _kernelized(model)
    enc = loaded_tok(["A man is playing a guitar.", "The stock market fell."], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**enc).last_hidden_state, original(**enc).last_hidden_state)


def test_hub_kernels_off_unless_asked(tmp_path):
    _saved("llama", tmp_path)
    assert pretrained_defaults({}) == {"use_kernels": False}
    assert pretrained_defaults({"use_kernels": True, "revision": "x"}) == {"use_kernels": True, "revision": "x"}
    assert not _kernelized(tz.load_model(str(tmp_path))[0])
    assert not _kernelized(tz.load_model(str(tmp_path), use_kernels=False)[0])
    from transformers.utils import is_kernels_available

    if is_kernels_available():  # a user's explicit choice reaches transformers
        assert _kernelized(tz.load_model(str(tmp_path), use_kernels=True)[0])
    else:
        with pytest.raises(ValueError, match="[Kk]ernels"):
            tz.load_model(str(tmp_path), use_kernels=True)


def test_dinov2_takes_the_default_but_refuses_kernels():
    with pytest.raises(TokenzipError, match="no extra arguments.*use_kernels"):
        load_dinov2(use_kernels=True)
