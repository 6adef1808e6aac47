"""Every chunkable kv method, alone and after each layers and each prompt method, chunked and not, on the tiny
decoder families (issue 23: the class behind kvzip_fast crashing under chunked prefill and a chunked kv stage
misreporting inside a pipeline).

For each combination:

1. it runs, or it is refused before any work (no forward pass of the model) with a message;
2. with every stage at ratio 0 the logits of the question after the compressed context equal, bit for bit, the
   uncompressed model's on the same context read the same way (in one pass, or in the same chunks);
3. with the stages compressing (prompt 0.5, layers 0.3, kv 0.5), every count the report gives equals what was really
   there, counted from the tensors, never from the report: the prompt stage's tokens in and out are the token ids of
   the original and the compressed text; the layers stage's are the tokens entering the first and the last decoder
   layer (hooks on the layers, summed over the chunks), its token-layers the tokens entering every layer; the kv
   stage's input is the entries the layers took in (at most ``window - 1`` on a sliding-window layer) and its output
   the entries the cache holds (each layer's stored length, or its valid entries where a mask says so); the
   achieved ratio is the kv stage's over the layers it compresses.

Covering rule of the test that runs by default (about a minute on one thread): every chunkable kv method on every
family, alone, chunked and not; every kv method after every decoder layers method, and after every prompt method,
chunked and not, each pair on one family, the families taken in rotation (kv method i with companion j on family
(i + j) mod 7), so that every family meets every companion. The slow test adds the rest of the cross product
for chunked prefills, where the composition is new (every kv method after every companion on every family; the
whole cross product, chunked and not, took 266 CPU-seconds on a loaded 2-core machine, so this half about 130).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import tokenzip as tz
from tokenzip.errors import TokenzipError
from tokenzip.kv.chunked import chunk_sizes
from tokenzip.kv.runtime import KVRuntime, target_layers
from tokenzip.layers.base import methods_for
from tokenzip.models.calling import cache_kwargs, new_cache
from tokenzip.models.decoders import DecoderAdapter
from tokenzip.testing import DECODER_FAMILIES, tiny_model

CONTEXT = ("The special magic number is 482913. The cat jumps over the lazy dog near the river. A long time ago "
           "the city had one bridge, two towers and a market by the water. ") * 3
QUESTION = "\nQuestion: What is the special magic number?\nAnswer:"
CHUNK = 32
RATIOS = {"prompt": 0.5, "layers": 0.3, "kv": 0.5}


def _kv_methods() -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [r["name"] for r in tz.methods(stage="kv")]
        return sorted(name for name in names if tz.get_method(name, stage="kv").supports_chunks())


KV = _kv_methods()
COMPANIONS = [("layers", name) for name in methods_for("decoder")] + \
             [("prompt", r["name"]) for r in tz.methods(stage="prompt")]


def spec(kv: str, companion: tuple[str, str] | None, chunked: bool, zero: bool) -> str:
    items = []
    if companion is not None:
        stage, name = companion
        items.append(f"{stage}:{name}@{0 if zero else RATIOS[stage]}")
    items.append(f"kv:{kv}{f':chunk_size={CHUNK}' if chunked else ''}@{0 if zero else RATIOS['kv']}")
    return " | ".join(items)


def covering() -> list[tuple[str, tuple[str, str] | None, str]]:
    cases: list[tuple[str, tuple[str, str] | None, str]] = [(kv, None, f) for kv in KV for f in DECODER_FAMILIES]
    for i, kv in enumerate(KV):
        for j, companion in enumerate(COMPANIONS):
            cases.append((kv, companion, DECODER_FAMILIES[(i + j) % len(DECODER_FAMILIES)]))
    return cases


def everything() -> list[tuple[str, tuple[str, str] | None, str]]:
    return [(kv, c, f) for kv in KV for c in COMPANIONS for f in DECODER_FAMILIES]


def _id(case: tuple) -> str:
    kv, companion, family = case
    return f"{kv}-{'+'.join(companion) if companion else 'alone'}-{family}"


@functools.cache
def models(family: str) -> tuple:
    """The model, its tokenizer, and a second copy scoring the prompt stage (its passes are not the model's)."""
    model, tok = tiny_model(family)
    return model, tok, tiny_model(family)


@functools.cache
def dense_logits(family: str, chunked: bool) -> torch.Tensor:
    """transformers alone: the context read in one pass (or in tokenzip's chunks) into a plain cache, then the
    question; the logits of its last token."""
    model, tok, _ = models(family)
    ids = tok(CONTEXT, return_tensors="pt").input_ids
    decoder, cache, start = DecoderAdapter(model).decoder, new_cache(model), 0
    with torch.no_grad():
        for size in chunk_sizes(ids.shape[1], CHUNK) if chunked else [ids.shape[1]]:
            decoder(input_ids=ids[:, start : start + size], use_cache=True, **cache_kwargs(decoder, cache))
            start += size
        return question_logits(model, tok, cache, ids.shape[1])


def question_logits(model, tok, cache, seen: int) -> torch.Tensor:
    q = tok(QUESTION, add_special_tokens=False, return_tensors="pt").input_ids
    positions = (seen + torch.arange(q.shape[1])).unsqueeze(0)
    return model(input_ids=q, position_ids=positions, use_cache=True, logits_to_keep=1,
                 **cache_kwargs(model, cache)).logits


class Watch:
    """Hooks counting, outside KVzip's reconstruction passes, the forward passes of the decoder and the tokens
    entering each of its layers."""

    def __init__(self, model, monkeypatch) -> None:
        self.adapter = DecoderAdapter(model)
        self.passes = 0
        self.entering = [0] * self.adapter.num_layers
        self.replaying = False
        replay = KVRuntime.replay

        def replaying(runtime, *args, **kwargs):
            self.replaying = True
            try:
                return replay(runtime, *args, **kwargs)
            finally:
                self.replaying = False

        monkeypatch.setattr(KVRuntime, "replay", replaying)
        self.handles = [self.adapter.decoder.register_forward_pre_hook(self._pass)]
        self.handles += [layer.register_forward_pre_hook(self._enter(i), with_kwargs=True)
                         for i, layer in enumerate(self.adapter.decoder.layers)]

    def _pass(self, module, args) -> None:
        self.passes += not self.replaying

    def _enter(self, i: int):
        def hook(module, args, kwargs):
            if not self.replaying:
                self.entering[i] += (args[0] if args else kwargs["hidden_states"]).shape[1]
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def took(self) -> list[int]:
        """Entries each layer took in: every token entering it, the last ``window - 1`` on a sliding-window one."""
        window = self.adapter.sliding_window()
        return [min(n, window - 1) if window and self.adapter.is_sliding(i) else n
                for i, n in enumerate(self.entering)]


def held(compressed) -> list[float]:
    """Entries each layer of the compressed cache holds: its stored length, or its valid entries (mean over heads)."""
    out = []
    for i, layer in enumerate(compressed.cache.layers):
        valid = compressed.masks.valid.get(i)
        out.append(float(layer.keys.shape[2]) if valid is None else float(valid.float().sum(-1).mean()))
    return out


def run(text: str, family: str, monkeypatch):
    """``(compressed, report, watch)`` of the pipeline ``text`` on the context, or ``(None, message, watch)`` when
    it was refused."""
    model, tok, scorer = models(family)
    watch = Watch(model, monkeypatch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compressed, report = tz.pipeline(text, prompt_scorer=scorer).run(model, tok, CONTEXT)
    except TokenzipError as exc:
        assert watch.passes == 0, f"{text}: refused after {watch.passes} forward passes: {exc}"
        assert str(exc)
        return None, str(exc), watch
    finally:
        watch.remove()
    return compressed, report, watch


def check(kv: str, companion: tuple[str, str] | None, family: str, chunked: bool, monkeypatch) -> str:
    model, tok, _ = models(family)
    # 2. ratio 0: the uncompressed model's logits, bit for bit
    text = spec(kv, companion, chunked, zero=True)
    compressed, report, watch = run(text, family, monkeypatch)
    if compressed is None:
        return f"refused: {report}"
    with torch.no_grad(), compressed.serving() as cache:
        logits = question_logits(model, tok, cache, compressed.seen)
    assert torch.equal(logits, dense_logits(family, chunked)), text
    n = len(tok(CONTEXT).input_ids)
    assert watch.entering == [n] * len(watch.entering) and sum(held(compressed)) == sum(watch.took()), text
    assert compressed.achieved_ratio == 0 and report.entries_held == report.dense_entries, text
    # 3. compressing: every count from the tensors
    text = spec(kv, companion, chunked, zero=False)
    compressed, report, watch = run(text, family, monkeypatch)
    if compressed is None:
        return f"refused: {report}"
    records = {r.stage: r for r in report.stages}
    entering, took, now = watch.entering, watch.took(), held(compressed)
    if "prompt" in records:
        shorter = records["prompt"]
        assert shorter.before == n == report.context_tokens, text
        assert shorter.after == entering[0] < n, text  # the ids the model read are the compressed text's
    else:
        assert entering[0] == n, text
    if "layers" in records:
        layers = records["layers"]
        assert layers.before == entering[0] and layers.after == entering[-1] < entering[0], text
        assert report.token_layers == sum(entering), text
        assert layers.entries_after == sum(took), text
    kv_record = records["kv"]
    assert kv_record.before == sum(took) and kv_record.after == sum(now) == report.entries_held, text
    targets = target_layers(DecoderAdapter(model), False)
    expected = 1 - sum(now[i] for i in targets) / sum(took[i] for i in targets)
    assert compressed.achieved_ratio == pytest.approx(expected, abs=1e-9), text
    assert compressed.achieved_ratio > 0.3, text  # the kv method removed about half of what it was given
    held_tensors = [t for layer in compressed.cache.layers for t in vars(layer).values()
                    if torch.is_tensor(t) and t.dim() > 0]  # entries and per-head lengths, not scalar bookkeeping
    assert report.bytes_held == sum(t.nelement() * t.element_size() for t in held_tensors), text
    return "ran"


@pytest.mark.parametrize("case", covering(), ids=_id)
@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunked"])
def test_combination(case, chunked, monkeypatch):
    kv, companion, family = case
    outcome = check(kv, companion, family, chunked, monkeypatch)
    assert outcome == "ran", outcome  # nothing in the covering set is refused on these inputs


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in everything() if c not in set(covering())], ids=_id)
def test_combination_everywhere_chunked(case, monkeypatch):
    kv, companion, family = case
    outcome = check(kv, companion, family, True, monkeypatch)
    assert outcome == "ran", outcome
