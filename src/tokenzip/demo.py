"""`tokenzip demo`: the README's main command.

Until the benchmark harness lands this runs a smaller real job: Gemma 3 270M answers a ~1,000-token
needle-in-a-haystack prompt, and the command prints the answer, the prefill and decode times.
"""

from __future__ import annotations

import argparse
import random
import time

import torch


def configure(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--model", default="gemma-3-270m", help="model short name, path or HF id")
    parser.add_argument("--tokens", type=int, default=1000, help="approximate prompt length in tokens")


def needle_prompt(tokenizer, n_tokens: int, number: int = 482913, seed: int = 0) -> str:
    """A completion-style needle prompt of about ``n_tokens`` tokens with the needle in the middle."""
    rng = random.Random(seed)
    filler = [
        "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
    ]
    sentences: list[str] = []
    while len(tokenizer(" ".join(sentences)).input_ids) < n_tokens:
        sentences.extend(rng.choice(filler) for _ in range(20))
    sentences.insert(len(sentences) // 2, f"The special magic number is {number}.")
    return (" ".join(sentences) + "\nQuestion: What is the special magic number?\n"
            "Answer: The special magic number is")


def run(args: argparse.Namespace) -> int:
    import tokenzip as tz

    start = time.perf_counter()
    model, tok = tz.load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - start:.1f} s")
    prompt = needle_prompt(tok, args.tokens)
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
        elapsed = time.perf_counter() - t0
    answer = tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
    print(f"prompt: {enc.input_ids.shape[1]} tokens; answer: {answer.strip()!r} (expected 482913); "
          f"generate took {elapsed:.2f} s")
    return 0
