"""Run kvpress (NVIDIA/kvpress 0.5.5) presses on tasks exported by `tokenzip bench --export-tasks`.

Runs in its own virtual environment (kvpress pins transformers < 5.3; see kvpress_setup.sh), on the
Gemma 3 270M weights tokenzip cached (safetensors + config + tokenizer.json, not the .gguf), and
writes rows in tokenzip's JSONL format to OUT_DIR/kvpress.jsonl, so that `tokenzip report OUT_DIR`
shows tokenzip's and kvpress's methods side by side on identical inputs.

Protocol (kvpress's own code): each question is answered by kvpress's pipeline ``_forward``: the
context is prefilled through ``model.model`` inside ``with press(model)`` (compression happens in
that prefill), then the question and the answer prefix are fed with position ids continuing after
the original context length, and the answer is decoded greedily. The token ids are built exactly as
tokenzip builds them (context with the tokenizer's special tokens, i.e. BOS; question + answer
prefix without), and the context length is checked against the export. One prefill per question:
kvpress's cache truncation between questions does not undo the answer's entries in Gemma 3's
sliding-window layers, so several questions are not answered from one cache here.

Gemma 3: kvpress skips the sliding-window layers only for ``Gemma3ForConditionalGeneration``; on
the text-only ``Gemma3ForCausalLM`` it compresses them too and the next forward fails on a
mask-size mismatch. This script gives ``Gemma3ForCausalLM`` the same treatment (sliding-window
layers are not compressed, like tokenzip's default) by widening kvpress's isinstance check, and says
so in its output. That alone is not enough: the pipeline's default ``DynamicCache()`` does not know
which layers slide, so transformers sizes every full-attention mask from layer 0 (an uncompressed
sliding layer) and the compressed global layers still get a mask of the wrong size. The pipeline's
``cache`` argument is therefore given ``DynamicCache(config=model.config)`` (what tokenzip uses too).

    bash benchmarks/anchors/kvpress_run.sh TASKS.jsonl OUT_DIR --presses knorm snapkv --ratios 0.5 0.75
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402


def presses(kvpress):
    """kvpress presses by the tokenzip name of the same method (engine 'kvpress' in the rows)."""
    return {
        "random": lambda r: kvpress.RandomPress(compression_ratio=r, seed=0),
        "knorm": lambda r: kvpress.KnormPress(compression_ratio=r),
        "streaming_llm": lambda r: kvpress.StreamingLLMPress(compression_ratio=r),
        "snapkv": lambda r: kvpress.SnapKVPress(compression_ratio=r),
        "tova": lambda r: kvpress.TOVAPress(compression_ratio=r),
        "keydiff": lambda r: kvpress.KeyDiffPress(compression_ratio=r),
        "pyramidkv": lambda r: kvpress.PyramidKVPress(compression_ratio=r),
        "lagkv": lambda r: kvpress.LagKVPress(compression_ratio=r),
        "expected_attention": lambda r: kvpress.ExpectedAttentionPress(compression_ratio=r),
        "adakv:base=snapkv": lambda r: kvpress.AdaKVPress(kvpress.SnapKVPress(compression_ratio=r)),
        "adakv:base=expected_attention": lambda r: kvpress.AdaKVPress(
            kvpress.ExpectedAttentionPress(compression_ratio=r, epsilon=1e-2)),
        "criticalkv:base=snapkv": lambda r: kvpress.CriticalKVPress(kvpress.SnapKVPress(compression_ratio=r)),
        "kvzip": lambda r: kvpress.KVzipPress(compression_ratio=r),
    }


def treat_gemma3_causal_lm_like_conditional_generation() -> None:
    """kvpress skips sliding-window layers for Gemma3ForConditionalGeneration; do the same for Gemma3ForCausalLM."""
    from kvpress.presses import base_press
    from transformers import Gemma3ForCausalLM, Gemma3ForConditionalGeneration

    base_press.Gemma3ForConditionalGeneration = (Gemma3ForConditionalGeneration, Gemma3ForCausalLM)


def string_match(metric: str, prediction: str, answers: list[str]) -> float:
    """RULER's string_match_all / string_match_part (the same scorer as tokenzip.bench.metrics)."""
    hits = [a.lower() in prediction.lower() for a in answers]
    return sum(hits) / len(hits) if metric == "all" else float(any(hits))


def peak_rss_reset() -> str:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "step"
    except OSError:
        return "process"


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def layer_bytes(layer) -> int:
    return sum(t.numel() * t.element_size() for t in (layer.keys, layer.values) if t is not None)


def layer_entries(layer) -> int:
    return 0 if layer.keys is None or layer.keys.numel() == 0 else layer.keys.shape[-2]


class PrefillProbe:
    """Times the first ``model.model`` call (the prefill, compression included) and records the cache after it."""

    def __init__(self, model):
        self.model, self.calls, self.cache, self.prefill_end = model, 0, None, None

    def __enter__(self):
        def after(module, args, kwargs, output):
            self.calls += 1
            if self.calls == 1:
                self.prefill_end = time.perf_counter()
                self.cache = kwargs.get("past_key_values")
                self.bytes = sum(layer_bytes(layer) for layer in self.cache.layers)
                self.entries = [layer_entries(layer) for layer in self.cache.layers]

        self.handle = self.model.model.register_forward_hook(after, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", help="JSONL written by `tokenzip bench --export-tasks`")
    parser.add_argument("out", help="directory for kvpress.jsonl (e.g. the tokenzip run directory)")
    parser.add_argument("--gemma-dir", required=True, help="tokenzip's cached Gemma 3 270M (safetensors)")
    parser.add_argument("--presses", nargs="+", default=["knorm", "snapkv", "streaming_llm", "tova"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import kvpress
    import transformers
    from kvpress.pipeline import KVPressTextGenerationPipeline
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("kvpress").setLevel(logging.ERROR)  # "model not tested" on every press call

    known = presses(kvpress)
    unknown = [p for p in args.presses if p not in known]
    if unknown:
        parser.error(f"unknown press(es) {unknown}; known: {', '.join(known)}")
    treat_gemma3_causal_lm_like_conditional_generation()
    print("kvpress anchor: Gemma3ForCausalLM gets kvpress's Gemma 3 treatment: its sliding-window layers are NOT "
          "compressed (kvpress does this only for Gemma3ForConditionalGeneration; without it the next forward fails "
          "on a mask-size mismatch), and its pipeline gets a cache built from the model config "
          "(DynamicCache(config=...)) so that masks are sized per layer type. Only the 3 global layers of 18 are "
          "compressed, as in tokenzip.", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(args.gemma_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = model.to(args.device).eval()
    tok = AutoTokenizer.from_pretrained(args.gemma_dir)
    pipe = KVPressTextGenerationPipeline(model=model, tokenizer=tok, device=torch.device(args.device))
    sliding = [getattr(layer.self_attn, "is_sliding", False) for layer in model.model.layers]
    global_layers = [i for i, s in enumerate(sliding) if not s]

    lines = [json.loads(line) for line in Path(args.tasks).read_text().splitlines() if line.strip()]
    lines = lines[: args.limit] if args.limit else lines
    by_sample: dict[str, list[dict]] = {}
    for line in lines:
        by_sample.setdefault(line["id"], []).append(line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "kvpress.jsonl"
    done = set()
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            try:
                done.add(json.loads(line)["key"])
            except (ValueError, KeyError):
                pass
    grid = [("none", 0.0)] + [(p, r) for p in args.presses for r in args.ratios]
    env = {"versions": {"kvpress": version("kvpress"), "transformers": version("transformers"),
                        "torch": torch.__version__, "python": platform.python_version()},
           "device": f"{args.device} ({torch.get_num_threads()} threads)", "host": platform.node(), "pid": os.getpid()}
    failed: dict[str, str] = {}

    with torch.no_grad():  # warm-up, untimed
        pipe._forward({"context_ids": tok(lines[0]["context"][:2000], return_tensors="pt").input_ids,
                       "questions_ids": [tok("Q", add_special_tokens=False, return_tensors="pt").input_ids]},
                      max_new_tokens=2)
    with open(rows_path, "a") as handle:
        for sample_id, questions in by_sample.items():
            first = questions[0]
            context_ids = tok(first["context"], return_tensors="pt").input_ids.to(args.device)
            if "context_tokens" in first and context_ids.shape[1] != first["context_tokens"]:
                raise SystemExit(f"{sample_id}: {context_ids.shape[1]} context tokens here, {first['context_tokens']} "
                                 "in tokenzip's export: the tokenizers differ, the inputs would not be identical")
            n = context_ids.shape[1]
            for name, ratio in grid:
                key = f"{sample_id}|{name}|{ratio:g}"
                if key in done or name in failed:
                    continue
                predictions, prefill, decode, new = [], 0.0, 0.0, 0
                scope = peak_rss_reset()
                try:
                    for q in questions:
                        press = None if name == "none" else known[name](ratio)
                        ids = tok(q["question"] + q["answer_prefix"], add_special_tokens=False,
                                  return_tensors="pt").input_ids.to(args.device)
                        with torch.no_grad(), PrefillProbe(model) as probe:
                            start = time.perf_counter()
                            answer = pipe._forward({"context_ids": context_ids, "questions_ids": [ids]},
                                                   max_new_tokens=q["max_new_tokens"], press=press,
                                                   cache=DynamicCache(config=model.config))[0]
                            end = time.perf_counter()
                        predictions.append(answer)
                        prefill += probe.prefill_end - start
                        decode += end - probe.prefill_end
                        new += len(tok(answer, add_special_tokens=False).input_ids)
                except Exception as exc:  # a press that does not run on this model: say so, go on
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    print(f"kvpress anchor: {name} fails on Gemma3ForCausalLM: {failed[name][:300]}", file=sys.stderr)
                    continue
                kept = sum(probe.entries[i] for i in global_layers) / len(global_layers)
                scores = [string_match(q["metric"], p, q["answer"]) for p, q in zip(predictions, questions)]
                row = {
                    "key": key, "engine": "kvpress", "model": first.get("model", "gemma-3-270m"), "stage": "kv",
                    "seed": first.get("seed"), "prompt_style": "exported", "query_aware": False,
                    "shared_prefill": False, "dtype": "float32", "device_kind": args.device.split(":")[0],
                    "max_new_tokens": None, "tasks_file_sha256": None, "task": first["task"], "task_kind": "qa",
                    "length": first["length"], "sample": first["index"], "metric": first["metric"],
                    "metadata": first.get("metadata", {}), "answers": [q["answer"] for q in questions],
                    "scores": scores, "score": sum(scores) / len(scores), "method": name, "ratio": ratio,
                    "predictions": predictions, "tokens_in": n, "tokens_kept": kept, "achieved_ratio": 1 - kept / n,
                    "prefill_seconds": prefill, "compress_seconds": None, "decode_seconds": decode, "new_tokens": new,
                    "decode_tokens_per_second": new / decode if decode else None, "cache_bytes_before": None,
                    "cache_bytes": probe.bytes, "peak_rss_bytes": peak_rss(), "peak_cuda_bytes": None,
                    "rss_peak_scope": scope, **env, "git_commit": None, "warmed_up": True,
                    "notes": ["kvpress: compression runs inside the prefill (prefill_seconds includes it); "
                              "sliding-window layers not compressed"],
                    "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                }
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            print(f"kvpress anchor: {sample_id} done", file=sys.stderr)
    for name, why in failed.items():
        print(f"kvpress anchor: no rows for {name}: {why[:200]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
