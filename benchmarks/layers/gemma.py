"""FastV / DART / random pruning inside Gemma 3 270M on needle-in-a-haystack retrieval (CPU or GPU).

    python benchmarks/layers/gemma.py --length 2000 --samples 10 --out benchmarks/layers/results/gemma.json

The ``tokenzip bench`` harness was not available when this was written, so this script builds its
own RULER-style samples (Hsieh et al., 2024, arXiv 2404.06654): a haystack of prose (Python standard
library docstrings, offline) of ``--length`` Gemma tokens with needles "The special magic number for
<key> is: <7 digits>." at random depths, and a completion-style question at the end. ``niah_single``
has one needle; ``niah_multikey`` has four with different keys and asks for one. A sample is right
when the greedy answer (12 new tokens) contains the number.

Speed: the prefill (one forward over the prompt, building the KV cache) of every sample, timed
uncompressed and compressed alternately; the speed-up is the median over samples of the paired
ratio. Score: fraction right; retention: fraction of the samples the uncompressed model gets right
that stay right. Everything against the same model, uncompressed, on the same inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from data import stdlib_documents  # noqa: E402

import tokenzip as tz  # noqa: E402

WORDS = ("amber river falcon quiet copper lantern meadow silver harbor crimson willow thunder marble "
         "orchid velvet canyon ember frost garnet hollow").split()


def make_sample(tok, rng: random.Random, length: int, needles: int, docs: list[str]) -> dict:
    keys = rng.sample([f"{a}-{b}" for a in WORDS for b in WORDS if a != b], needles)
    numbers = [str(rng.randint(1_000_000, 9_999_999)) for _ in keys]
    target = rng.randrange(needles)
    question = (f"\nWhat is the special magic number for {keys[target]} mentioned in the text above? "
                f"The special magic number for {keys[target]} is:")
    sentences = " ".join(rng.sample(docs, len(docs))).split(". ")
    budget = length - len(tok(question)["input_ids"]) - 30 * needles
    haystack, used = [], 0
    for s in sentences:
        n = len(tok(s + ". ", add_special_tokens=False)["input_ids"])
        if used + n > budget:
            break
        haystack.append(s + ".")
        used += n
    for key, number in zip(keys, numbers):
        haystack.insert(rng.randrange(len(haystack) + 1), f"The special magic number for {key} is: {number}.")
    return {"prompt": " ".join(haystack) + question, "answer": numbers[target]}


def prefill_seconds(model, inputs) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(**inputs, use_cache=True)
    return time.perf_counter() - start


def answer(model, tok, inputs) -> str:
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=10, help="per task")
    parser.add_argument("--methods", nargs="+", default=["fastv", "dart", "layers.random"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = tz.load_model("gemma-3-270m")
    docs = stdlib_documents(256)
    samples = []
    for task, needles in (("niah_single", 1), ("niah_multikey", 4)):
        rng = random.Random(f"{args.seed}-{task}-{args.length}")
        samples += [{"task": task, **make_sample(tok, rng, args.length, needles, docs)} for _ in range(args.samples)]
    encoded = [tok(s["prompt"], return_tensors="pt") for s in samples]
    load_before = os.getloadavg()
    base_right = [s["answer"] in answer(model, tok, x) for s, x in zip(samples, encoded)]
    rows = [{"method": "none", "ratio": 0.0, "score": sum(base_right) / len(samples), "retention": 1.0,
             "prefill_speedup": 1.0, "tokens": statistics.mean(x["input_ids"].shape[1] for x in encoded)}]
    print(json.dumps(rows[0]), flush=True)
    for name in args.methods:
        for ratio in args.ratios:
            method = tz.get_method(name, ratio=ratio)
            right, speedups, kept = [], [], []
            for sample, inputs in zip(samples, encoded):
                prefill_seconds(model, inputs)  # warm-up, both sides
                with tz.compress(model, method):
                    prefill_seconds(model, inputs)
                base = prefill_seconds(model, inputs)
                with tz.compress(model, method):
                    pruned = prefill_seconds(model, inputs)
                    kept.append(method.last_report.compute_fraction)
                    right.append(sample["answer"] in answer(model, tok, inputs))
                speedups.append(base / pruned)
            kept_right = [r for r, b in zip(right, base_right) if b]
            row = {"method": name.removeprefix("layers."), "ratio": ratio, "score": sum(right) / len(samples),
                   "retention": sum(kept_right) / max(sum(base_right), 1),
                   "prefill_speedup": round(statistics.median(speedups), 3),
                   "compute_fraction": round(statistics.mean(kept), 4),
                   "by_task": {t: sum(r for r, s in zip(right, samples) if s["task"] == t) / args.samples
                               for t in ("niah_single", "niah_multikey")}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"command": "python " + " ".join(sys.argv), "model": "gemma-3-270m", "device": "cpu",
              "threads": torch.get_num_threads(), "length": args.length, "samples": len(samples),
              "base_by_task": {t: sum(r for r, s in zip(base_right, samples) if s["task"] == t) / args.samples
                               for t in ("niah_single", "niah_multikey")},
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
