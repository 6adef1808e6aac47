"""Score prompt-method variants on exported ``qa`` tasks, the way ``tokenzip bench --stage prompt`` does.

Each variant is a JSON object: ``method`` and any of its parameters (``reorder``, ``protected_first``,
``document_tokens``, ``protect``). The context is compressed with ``tz.prompt.compress`` (the sample's
question given), then Gemma 3 270M answers after it through ``tz.kv.prefill`` / ``answer_from``, as
in the bench; a sample scores 1 when an answer string is in the output.

    python benchmarks/prompt_ablation.py benchmarks/prompt-gemma-3-270m/bench-qa/tasks.jsonl 0.5 \\
        '{"method": "none"}' '{"method": "extractive", "reorder": "none", "protected_first": false}'
"""

from __future__ import annotations

import argparse
import json
import re
import time

import tokenzip as tz
from tokenzip.bench.rows import read_rows
from tokenzip.prompt.scorer import get_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", help="a tokenzip bench --export-tasks file of qa prompts")
    parser.add_argument("ratio", type=float)
    parser.add_argument("variants", nargs="+", help='JSON objects, e.g. \'{"method": "extractive"}\'')
    args = parser.parse_args()
    model, tokenizer = tz.load_model("gemma-3-270m")
    scorer = get_scorer((model, tokenizer))
    tasks = read_rows(args.tasks)
    for variant in map(json.loads, args.variants):
        method = variant.pop("method")
        started, scores, removed = time.perf_counter(), [], []
        for task in tasks:
            question = re.search(r"Question: (.*)\n", task["question"]).group(1)
            text = task["context"]
            if method != "none":
                result = tz.prompt.compress(text, ratio=args.ratio, question=question, method=method, scorer=scorer,
                                            **variant)
                text = result.text
                removed.append(result.ratio)
            cache = tz.kv.prefill(model, tokenizer, text).compress(None)
            answer = tz.kv.answer_from(model, tokenizer, cache, task["question"],
                                       max_new_tokens=task["max_new_tokens"])[0]
            scores.append(int(any(a.lower() in answer.lower() for a in task["answer"])))
        achieved = sum(removed) / len(removed) if removed else 0.0
        print(f"{method} {json.dumps(variant)} ratio {args.ratio}: {sum(scores)}/{len(scores)} {scores} "
              f"achieved {achieved:.3f} in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
