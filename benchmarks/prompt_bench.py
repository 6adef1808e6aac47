"""Prompt-stage benchmark: compress each task's context, let the target model answer from it.

Until `tokenzip bench --stage prompt` exists, this script runs the same protocol through the public
API: Gemma 3 270M is both the scorer and the target model; contexts come from the synthetic
generators below (RULER-style, exact answers, no downloads); the question is given to the
question-aware methods; the target model answers greedily from ``context + question``.

    python benchmarks/prompt_bench.py export --out results/prompt/tasks.jsonl
    bash benchmarks/anchors/llmlingua_run.sh results/prompt/tasks.jsonl results/prompt/llmlingua.jsonl
    python benchmarks/prompt_bench.py run --tasks results/prompt/tasks.jsonl \
        --anchor results/prompt/llmlingua.jsonl --out results/prompt/rows.jsonl
    python benchmarks/prompt_bench.py report results/prompt/rows.jsonl
    # compressor throughput alone, the two tools one after the other on the same contexts:
    python benchmarks/prompt_bench.py speed --tasks results/prompt/tasks.jsonl --out results/prompt/speed.jsonl
    bash benchmarks/anchors/llmlingua_run.sh results/prompt/tasks.jsonl results/prompt/speed-llmlingua.jsonl \
        --ratios 0.5
    python benchmarks/prompt_bench.py speed-report --tokenzip results/prompt/speed.jsonl \
        --anchor results/prompt/speed-llmlingua.jsonl

Tasks (``--samples`` each, contexts of about ``--context`` Gemma tokens):
- ``qa``: short documents about invented towns; the question asks one fact of one document.
- ``niah_multikey``: filler text with four "special magic number" needles; the question names one key.
- ``vt``: variable tracking: a chain of ``VAR X = VAR Y`` assignments hidden in filler; name them all.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import string
import time
from pathlib import Path

from tokenzip.bench.rows import read_rows

RATIOS = (0.5, 0.667, 0.8)
METHODS = ("llmlingua", "longllmlingua", "extractive")

_ADJ = "quiet old busy narrow bright dusty green cold warm tall small broad silent early late gentle".split()
_NOUN = ("market river bridge garden tower library harbour station village forest meadow workshop school "
         "bakery chapel orchard valley road square museum").split()
_VERB = ("stands near|leads to|opens onto|runs beside|looks over|lies behind|faces|borders|surrounds|"
         "connects with").split("|")
_TAIL = ("in the morning|after the rain|during the long summer|for most of the year|when the fog lifts|"
         "on market days|at the end of autumn|under a pale sky").split("|")


def filler_sentence(rng: random.Random) -> str:
    return (f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} the {rng.choice(_ADJ)} "
            f"{rng.choice(_NOUN)} {rng.choice(_TAIL)}.")


def name(rng: random.Random, syllables: int = 2) -> str:
    parts = ["bre", "wick", "tal", "mor", "ven", "dra", "sel", "kin", "lor", "hav", "ost", "pel", "quin", "rud",
             "sav", "tor", "ul", "yar", "zen", "cor", "fen", "gal", "mir", "nor"]
    return "".join(rng.choice(parts) for _ in range(syllables)).capitalize()


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def grow(rng: random.Random, tokenizer, sentences: list[str], inserts: list[str], context: int) -> str:
    """Filler sentences until ``context`` tokens, with ``inserts`` spread at random positions."""
    while count_tokens(tokenizer, " ".join(sentences)) < context:
        sentences += [filler_sentence(rng) for _ in range(8)]
    for text in inserts:
        sentences.insert(rng.randint(0, len(sentences)), text)
    return " ".join(sentences)


def make_qa(rng: random.Random, tokenizer, context: int) -> dict:
    roles = ["harbour master", "head librarian", "chief baker", "bridge keeper", "mayor", "clock maker"]
    docs, facts = [], []
    while True:
        town, role = name(rng), rng.choice(roles)
        person = f"{name(rng)} {name(rng, 3)}"
        body = [f"The town of {town} lies by the {rng.choice(_ADJ)} {rng.choice(_NOUN)}.",
                f"The {role} of {town} is {person}."] + [filler_sentence(rng) for _ in range(3)]
        rng.shuffle(body)
        docs.append(" ".join(body))
        facts.append((town, role, person))
        if count_tokens(tokenizer, "\n\n".join(docs)) >= context:
            break
    text = "\n\n".join(f"Document [{i + 1}] {d}" for i, d in enumerate(docs))
    town, role, person = rng.choice(facts)
    return {"context": text, "question": f"Who is the {role} of {town}?", "answers": [person], "prefix": ""}


def make_niah(rng: random.Random, tokenizer, context: int) -> dict:
    keys = [f"{name(rng)}-{name(rng)}".lower() for _ in range(4)]
    values = [str(rng.randint(1_000_000, 9_999_999)) for _ in keys]
    needles = [f"One of the special magic numbers for {k} is: {v}." for k, v in zip(keys, values)]
    text = grow(rng, tokenizer, [], needles, context)
    i = rng.randrange(len(keys))
    return {"context": text, "question": f"What is the special magic number for {keys[i]}?", "answers": [values[i]],
            "prefix": f" The special magic number for {keys[i]} is"}


def make_vt(rng: random.Random, tokenizer, context: int, hops: int = 4) -> dict:
    names = ["".join(rng.choice(string.ascii_uppercase) for _ in range(5)) for _ in range(hops + 1)]
    value = str(rng.randint(10_000, 99_999))
    chain = [f"VAR {names[0]} = {value}."] + [f"VAR {names[i + 1]} = VAR {names[i]}." for i in range(hops)]
    sentences = []
    while count_tokens(tokenizer, " ".join(sentences)) < context:
        sentences += [filler_sentence(rng) for _ in range(8)]
    positions = sorted(rng.sample(range(len(sentences) + 1), len(chain)))
    for offset, (pos, line) in enumerate(zip(positions, chain)):
        sentences.insert(pos + offset, line)
    return {"context": " ".join(sentences), "question": f"Find all variables that are assigned the value {value}.",
            "answers": names, "prefix": f" The variables assigned the value {value} are:"}


MAKERS = {"qa": make_qa, "niah_multikey": make_niah, "vt": make_vt}


def export(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    from tokenzip.models.gemma import ensure_cache

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_cache()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for task in args.tasks.split(","):
            rng = random.Random(f"{task}-{args.seed}")
            for i in range(args.samples):
                row = {"task": task, "id": f"{task}-{i}", **MAKERS[task](rng, tokenizer, args.context)}
                row["tokens"] = count_tokens(tokenizer, row["context"])
                f.write(json.dumps(row) + "\n")
    print(f"wrote {out}")


def score(task: str, output: str, answers: list[str]) -> float:
    """Fraction of the answers found in the output (RULER's string-match metric)."""
    out = output.lower()
    if task == "qa":
        return float(any(a.lower() in out for a in answers))
    return sum(a.lower() in out for a in answers) / len(answers)


def prompt_for(row: dict, context: str) -> str:
    return f"{context}\n\nQuestion: {row['question']}\nAnswer:{row['prefix']}"


def answer(model, tokenizer, row: dict, context: str, max_new_tokens: int) -> tuple[str, float]:
    import torch

    enc = tokenizer(prompt_for(row, context), return_tensors="pt")
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    text = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return text.split("\n\n")[0], time.perf_counter() - started


def run(args: argparse.Namespace) -> None:
    import os

    import tokenzip as tz

    model, tokenizer = tz.load_model("gemma-3-270m")
    rows = read_rows(args.tasks)
    anchor = {}
    if args.anchor:
        anchor = {(a["id"], a["method"], a["ratio"]): a for a in read_rows(args.anchor)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if not args.fresh:
        done = {(r["id"], r["method"], r["ratio"]) for r in read_rows(out)}
    methods = [m for m in args.methods.split(",") if m]
    tz.prompt.compress("warm up the scorer once.", ratio=0.5, method="llmlingua", scorer=(model, tokenizer))
    with out.open("a") as f:
        def emit(row, method, ratio, text, tokens_after, seconds, source):
            generated, gen_seconds = answer(model, tokenizer, row, text, args.max_new_tokens)
            rec = {"id": row["id"], "task": row["task"], "method": method, "ratio": ratio, "source": source,
                   "tokens_before": row["tokens"], "tokens_after": tokens_after,
                   "achieved_ratio": 1 - tokens_after / row["tokens"], "compress_seconds": seconds,
                   "answer_seconds": gen_seconds, "output": generated,
                   "score": score(row["task"], generated, row["answers"]), "load": os.getloadavg()[0]}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(f"{row['id']:>16} {source:>9} {method:>14} {ratio:<5} ratio={rec['achieved_ratio']:.3f} "
                  f"score={rec['score']:.2f} compress={seconds:.1f}s out={generated[:40]!r}", flush=True)

        for row in rows:
            if (row["id"], "none", 0.0) not in done:
                emit(row, "none", 0.0, row["context"], row["tokens"], 0.0, "none")
            for ratio in RATIOS:
                for method in methods:
                    if (row["id"], method, ratio) in done:
                        continue
                    question = row["question"]
                    r = tz.prompt.compress(row["context"], ratio=ratio, method=method, question=question,
                                           scorer=(model, tokenizer))
                    emit(row, method, ratio, r.text, r.tokens_after, r.seconds, "tokenzip")
                for (aid, amethod, aratio), a in anchor.items():
                    if aid != row["id"] or aratio != ratio or (aid, f"{amethod} (llmlingua pkg)", ratio) in done:
                        continue
                    tokens_after = count_tokens(tokenizer, a["text"])
                    emit(row, f"{amethod} (llmlingua pkg)", ratio, a["text"], tokens_after, a["seconds"], "llmlingua")


def speed(args: argparse.Namespace) -> None:
    """Compressor throughput only (no answering): every context once per method at ``--ratio``."""
    import os

    import tokenzip as tz

    model, tokenizer = tz.load_model("gemma-3-270m")
    rows = read_rows(args.tasks)
    tz.prompt.compress("warm up the scorer once.", ratio=0.5, method="llmlingua", scorer=(model, tokenizer))
    with Path(args.out).open("a") as f:
        for row in rows:
            for method in args.methods.split(","):
                r = tz.prompt.compress(row["context"], ratio=args.ratio, method=method, question=row["question"],
                                       scorer=(model, tokenizer))
                rec = {"id": row["id"], "method": method, "ratio": args.ratio, "seconds": r.seconds,
                       "tokens": row["tokens"], "load": os.getloadavg()[0]}
                f.write(json.dumps(rec) + "\n")
                print(rec, flush=True)


def speed_report(args: argparse.Namespace) -> None:
    """Tokens/s per tool and method from ``speed`` and the anchor's JSONL files (same contexts)."""
    groups: dict[tuple, list] = {}
    for path, tool in ((args.tokenzip, "tokenzip"), (args.anchor, "llmlingua pkg")):
        for r in read_rows(path):
            groups.setdefault((r["method"], tool), []).append(r)
    print("| method | tool | contexts | input tokens | seconds | tokens/s | load (median) |")
    print("|---|---|---|---|---|---|---|")
    for (method, tool), rs in sorted(groups.items()):
        tokens, secs = sum(r["tokens"] for r in rs), sum(r["seconds"] for r in rs)
        print(f"| {method} | {tool} | {len(rs)} | {tokens} | {secs:.1f} | {tokens / secs:.1f} | "
              f"{statistics.median(r['load'] for r in rs):.1f} |")


def report(args: argparse.Namespace) -> None:
    rows = read_rows(args.rows)
    tasks = sorted({r["task"] for r in rows}, key=lambda t: list(MAKERS).index(t))
    base = {r["id"]: r["score"] for r in rows if r["method"] == "none"}
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["method"], r["ratio"]), []).append(r)
    lines = ["| method | ratio asked | achieved (mean) | " + " | ".join(tasks) + " | % of uncompressed (all) |"
             " compressor tokens/s | compress s / sample | answer s / sample | end-to-end s / sample |",
             "|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|"]
    base_all = statistics.mean(base.values()) if base else 0.0
    order = sorted(groups, key=lambda k: (k[1], _method_order(k[0])))
    for method, ratio in order:
        rs = groups[(method, ratio)]
        per_task = []
        for t in tasks:
            xs = [r["score"] for r in rs if r["task"] == t]
            per_task.append(f"{statistics.mean(xs):.2f}" if xs else "-")
        mean_score = statistics.mean(r["score"] for r in rs)
        retained = 100 * mean_score / base_all if base_all else float("nan")
        secs = sum(r["compress_seconds"] for r in rs)
        tps = sum(r["tokens_before"] for r in rs) / secs if secs > 0 else float("nan")
        lines.append(
            f"| {method} | {ratio:g} | {statistics.mean(r['achieved_ratio'] for r in rs):.3f} | "
            + " | ".join(per_task)
            + f" | {retained:.0f}% | {'-' if method == 'none' else f'{tps:.0f}'} | "
            f"{secs / len(rs):.1f} | {statistics.mean(r['answer_seconds'] for r in rs):.1f} | "
            f"{statistics.mean(r['answer_seconds'] + r['compress_seconds'] for r in rs):.1f} |"
        )
    loads = [r["load"] for r in rows]
    lines.append("")
    lines.append(f"{len(base)} samples; load average during the run: min {min(loads):.1f}, "
                 f"median {statistics.median(loads):.1f}, max {max(loads):.1f} (2 cores).")
    print("\n".join(lines))


def _method_order(method: str) -> tuple:
    key = re.sub(r" \(llmlingua pkg\)", "", method)
    return (["none", *METHODS].index(key) if key in ["none", *METHODS] else 9, method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export")
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", default="qa,niah_multikey,vt")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--context", type=int, default=700)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("run")
    p.add_argument("--tasks", required=True)
    p.add_argument("--anchor", default=None)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", required=True)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--fresh", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("rows")
    p = sub.add_parser("speed")
    p.add_argument("--tasks", required=True)
    p.add_argument("--methods", default="llmlingua,longllmlingua")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--out", required=True)
    p = sub.add_parser("speed-report")
    p.add_argument("--tokenzip", required=True)
    p.add_argument("--anchor", required=True)
    args = parser.parse_args()
    {"export": export, "run": run, "report": report, "speed": speed, "speed-report": speed_report}[args.command](args)


if __name__ == "__main__":
    main()
