"""Model loading: short names, errors, the verified Gemma cache, and the real weights (slow)."""

import json

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import MissingDependencyError, TokenzipError, require
from tokenzip.models import gemma as gemma_mod


def test_unknown_name_lists_available():
    with pytest.raises(TokenzipError, match="gemma-3-270m.*minilm-l6"):
        tz.load_model("gemma-270m")


def test_missing_dependency_names_extra():
    with pytest.raises(MissingDependencyError, match=r"tokenzip\[gemma\]"):
        require("no_such_module_tokenzip", "gemma")


def test_list_models_rows():
    rows = {r["name"]: r for r in tz.list_models()}
    assert {"gemma-3-270m", "minilm-l6"} <= set(rows)
    assert rows["gemma-3-270m"]["install"] == "pip install 'tokenzip[gemma]'"


def _fake_cache(directory):
    directory.mkdir(parents=True)
    files = {}
    for name in gemma_mod.FILES:
        (directory / name).write_bytes(name.encode() * 10)
        files[name] = {"size": (directory / name).stat().st_size, "sha256": gemma_mod._sha256(directory / name)}
    (directory / gemma_mod.MANIFEST).write_text(json.dumps({"files": files}))


def test_verify_detects_corruption(tmp_path):
    d = tmp_path / "g"
    _fake_cache(d)
    assert gemma_mod.verify(d) is None
    data = bytearray((d / "model.safetensors").read_bytes())
    data[3] ^= 0xFF  # same size, different bytes
    (d / "model.safetensors").write_bytes(bytes(data))
    assert "SHA-256" in gemma_mod.verify(d)
    (d / "config.json").write_bytes(b"{}")  # a size mismatch is found before any hashing
    assert "config.json has 2 bytes" in gemma_mod.verify(d)
    (d / gemma_mod.MANIFEST).unlink()
    assert "manifest" in gemma_mod.verify(d)


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENZIP_CACHE", str(tmp_path))
    d = gemma_mod.gemma_dir()
    _fake_cache(d)
    (d / "tokenizer.json").write_bytes(b"truncated")
    builds = []

    def fake_build(directory):
        builds.append(directory)
        import shutil

        shutil.rmtree(directory)
        _fake_cache(directory)

    monkeypatch.setattr(gemma_mod, "build_cache", fake_build)
    assert gemma_mod.ensure_cache() == d
    assert builds == [d]
    assert gemma_mod.ensure_cache() == d and builds == [d]  # intact now: not rebuilt


@pytest.mark.slow
def test_gemma_needle_and_cache(gemma, monkeypatch):
    from tokenzip.demo import needle_prompt

    model, tok = gemma
    assert type(model).__name__ == "Gemma3ForCausalLM"
    prompt = needle_prompt(tok, 1000, number=482913)
    enc = tok(prompt, return_tensors="pt")
    assert 950 <= enc.input_ids.shape[1] <= 1200
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "482913" in tok.decode(out[0, enc.input_ids.shape[1]:])

    def no_build(directory):
        raise AssertionError("a second load must come from the cache")

    monkeypatch.setattr(gemma_mod, "build_cache", no_build)
    model2, _ = tz.load_model("gemma-3-270m")
    assert "quantization_config" not in model2.config.to_dict()


@pytest.mark.slow
def test_minilm_paraphrase_closer_than_unrelated(minilm):
    from tokenzip.models.encoders import embed

    model, tok = minilm
    e = embed(model, tok, ["A man is playing a guitar.", "Someone plays the guitar.",
                           "The stock market fell sharply today."])
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    para, unrelated = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert para > unrelated + 0.3, (para, unrelated)
