"""Run microsoft/LLMLingua (the ``llmlingua`` 0.2.2 package) on the exported prompt-stage tasks.

Runs inside the llmlingua virtual environment (``llmlingua_setup.sh``); ``llmlingua_run.sh`` calls it.
The scorer is the same Gemma 3 270M tokenzip uses, read from tokenzip's verified cache. Three
adaptations, none of which changes the model or the algorithm, are needed and are printed:

1. A model directory for transformers 4.57: tokenzip's cache was written by transformers 5.23, so its
   ``config.json`` has no ``architectures`` (llmlingua reads it to choose the model class) and uses
   5.x rope keys, and its safetensors file has no ``format: pt`` metadata and stores the tied
   embedding as ``lm_head.weight``. The same tensors are rewritten with that metadata and key.
2. llmlingua counts tokens with tiktoken's ``gpt-3.5-turbo`` encoding, whose file it downloads at run
   time (not possible here). Its counter is replaced by the Gemma tokenizer, so ``rate`` is measured on
   the target model's tokens, as tokenzip's is.
3. Only the compressed context is kept: llmlingua appends the question to ``compressed_prompt``.

    python llmlingua_run.py TASKS.jsonl OUT.jsonl --gemma-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from pathlib import Path

RATIOS = (0.5, 0.667, 0.8)


def model_view(gemma_dir: Path, view: Path) -> Path:
    """A transformers-4.x-readable copy of the cached Gemma 3 270M (same tensors)."""
    from safetensors.torch import load_file, save_file

    marker = view / ".done"
    if marker.exists():
        return view
    view.mkdir(parents=True, exist_ok=True)
    config = json.loads((gemma_dir / "config.json").read_text())
    config["architectures"] = ["Gemma3ForCausalLM"]
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = rope.get("full_attention", {}).get("rope_theta", 1_000_000.0)
    config["rope_local_base_freq"] = rope.get("sliding_attention", {}).get("rope_theta", 10_000.0)
    (view / "config.json").write_text(json.dumps(config, indent=1))
    tensors = load_file(str(gemma_dir / "model.safetensors"))
    if "model.embed_tokens.weight" not in tensors and "lm_head.weight" in tensors:
        tensors["model.embed_tokens.weight"] = tensors.pop("lm_head.weight")
    save_file(tensors, str(view / "model.safetensors"), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(gemma_dir / name, view / name)
    marker.write_text("ok")
    return view


def documents(context: str) -> list[str]:
    """Paragraphs; a single paragraph becomes groups of six sentences (llmlingua's unit of context)."""
    paragraphs = [p for p in context.split("\n\n") if p.strip()]
    if len(paragraphs) > 1:
        return paragraphs
    sentences = re.split(r"(?<=[.!?])\s+", context)
    return [" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]


def question(row: dict) -> str:
    """The question alone (``tokenzip bench --export-tasks`` wraps it in ``Question: ... Answer:``)."""
    text = row["question"].strip()
    text = re.sub(r"^Question:\s*", "", text)
    return re.sub(r"\s*Answer:\s*$", "", text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tasks")
    parser.add_argument("out")
    parser.add_argument("--gemma-dir", required=True)
    parser.add_argument("--view", default=None)
    parser.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    args = parser.parse_args()
    ratios = [float(x) for x in args.ratios.split(",")]

    import tiktoken
    import torch
    import transformers
    from transformers import AutoTokenizer

    gemma_dir = Path(args.gemma_dir)
    view = model_view(gemma_dir, Path(args.view) if args.view else gemma_dir.parent / "gemma-3-270m-llmlingua-view")
    tokenizer = AutoTokenizer.from_pretrained(str(view))

    class GemmaCount:
        """Stands in for tiktoken's encoding: llmlingua only calls encode()/decode()."""

        def encode(self, text: str, **_: object) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        def decode(self, ids: list[int]) -> str:
            return tokenizer.decode(ids)

    tiktoken.encoding_for_model = lambda name: GemmaCount()
    from llmlingua import PromptCompressor

    compressor = PromptCompressor(model_name=str(view), device_map="cpu")
    print(f"llmlingua 0.2.2 on transformers {transformers.__version__}, torch {torch.__version__}, "
          f"model {type(compressor.model).__name__} from {view}")
    probe = "The quick brown fox jumps over the lazy dog near the river bank."
    print(f"probe mean loss (nats) = {float(compressor.get_ppl(probe, granularity='sentence')):.4f} "
          "(compare with tokenzip's scorer on the same sentence)")
    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["id"], r["method"], r["ratio"]))
    rows = [json.loads(x) for x in Path(args.tasks).read_text().splitlines() if x.strip()]
    compressor.compress_prompt(["warm up the model once."], rate=0.5)
    with out.open("a") as f:
        for row in rows:
            docs = documents(row["context"])
            for ratio in ratios:
                settings = {
                    "llmlingua": {},  # the package defaults (LLMLingua: context filter + iterative token level)
                    "longllmlingua": dict(  # the settings its README recommends for LongLLMLingua
                        question=question(row), rank_method="longllmlingua", condition_in_question="after_condition",
                        reorder_context="sort", dynamic_context_compression_ratio=0.3, condition_compare=True,
                        context_budget="+100"),
                }
                for method, kwargs in settings.items():
                    if (row["id"], method, ratio) in done:
                        continue
                    started = time.perf_counter()
                    result = compressor.compress_prompt(docs, rate=1 - ratio, **kwargs)
                    seconds = time.perf_counter() - started
                    text = result["compressed_prompt"]
                    if kwargs.get("question") and text.endswith(kwargs["question"]):
                        text = text[: -len(kwargs["question"])].rstrip("\n")
                    rec = {"id": row["id"], "method": method, "ratio": ratio, "text": text, "seconds": seconds,
                           "tokens": row.get("tokens", row.get("context_tokens")), "load": os.getloadavg()[0],
                           "origin_tokens": result["origin_tokens"], "compressed_tokens": result["compressed_tokens"]}
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    print(f"{row['id']:>16} {method:>14} {ratio} {result['origin_tokens']} -> "
                          f"{result['compressed_tokens']} in {seconds:.1f}s", flush=True)


if __name__ == "__main__":
    main()
