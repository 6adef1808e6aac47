"""Run kvpress (NVIDIA/kvpress 0.5.5) presses on tasks exported by `tokenzip bench --export-tasks`.

Runs in its own virtual environment (kvpress pins transformers < 5.3; see kvpress_setup.sh), on the
weights tokenzip cached for the model (safetensors + config + tokenizer.json, not the .gguf:
``--model-dir``, e.g. Gemma 3 270M's or SmolLM2-135M-Instruct's cache), and writes rows in tokenzip's
JSONL format to OUT_DIR/kvpress.jsonl, so that `tokenzip report OUT_DIR` shows tokenzip's and kvpress's
methods side by side on identical inputs.

Protocol (kvpress's own code): each question is answered by kvpress's pipeline ``_forward``: the
context is prefilled through ``model.model`` inside ``with press(model)`` (compression happens in
that prefill, or right after it for KVzipPress, whose context reconstruction runs when the press's
context exits), then the question and the answer prefix are fed with position ids continuing after
the original context length, and the answer is decoded greedily. The token ids are built exactly as
tokenzip builds them: the exported context tokenized with the tokenizer's special tokens (Gemma's
tokenizer adds BOS; SmolLM2's adds nothing, its chat-formatted context already starts with its BOS,
``<|im_start|>``), question + answer prefix without; the context length is checked against the export.
Exported chat prompts (``"formatted": true``) are used as they are: kvpress's ``preprocess`` (which
would apply the chat template again) is not called. One prefill per question and press: kvpress's
cache truncation between questions does not undo the answer's entries in Gemma 3's sliding-window
layers, so several questions are not answered from one cache here. Samples run in rounds (sample 0 of
every task and length, then sample 1, ...), so an interrupted run has the first samples of every task;
a re-run resumes (rows already in kvpress.jsonl are skipped). ``torch.manual_seed(0)`` before every
question makes the Gaussian sketches of CompactorPress and LeverageScorePress reproducible.

Timing: ``prefill_seconds`` runs from the call to the first answer step (prefill + compression, KVzip's
reconstruction passes included); ``decode_seconds`` is the question and the greedy answer. Kept
entries are read from the cache when answering starts; presses that evict per head by masking
(KVzipPress, AdaKVPress, CriticalKVPress: ``masked_key_indices``, the evicted keys replaced by fake keys
at attention time) keep the evicted entries in the cache, so their ``cache_bytes`` is what the cache
really holds (dense) and ``tokens_kept`` counts the unmasked entries.

Gemma 3 only: kvpress skips the sliding-window layers only for ``Gemma3ForConditionalGeneration``; on
the text-only ``Gemma3ForCausalLM`` it compresses them too and the next forward fails on a
mask-size mismatch. This script gives ``Gemma3ForCausalLM`` the same treatment (sliding-window
layers are not compressed, like tokenzip's default) by widening kvpress's isinstance check, and says
so in its output. That alone is not enough: the pipeline's default ``DynamicCache()`` does not know
which layers slide, so transformers sizes every full-attention mask from layer 0 (an uncompressed
sliding layer) and the compressed global layers still get a mask of the wrong size. The pipeline's
``cache`` argument is therefore given ``DynamicCache(config=model.config)`` (what tokenzip uses too,
for every model). Other models (SmolLM2: Llama architecture, every layer full attention) are
compressed in every layer, so ``ratio`` is the whole cache's.

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
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402


def presses(kvpress):
    """kvpress presses by the tokenzip name of the same method (engine 'kvpress' in the rows), defaults as shipped."""
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
        "compactor": lambda r: kvpress.CompactorPress(compression_ratio=r),
        "cur": lambda r: kvpress.CURPress(compression_ratio=r),
        "leverage": lambda r: kvpress.LeverageScorePress(compression_ratio=r),
        "adakv:base=snapkv": lambda r: kvpress.AdaKVPress(kvpress.SnapKVPress(compression_ratio=r)),
        "adakv:base=expected_attention": lambda r: kvpress.AdaKVPress(
            kvpress.ExpectedAttentionPress(compression_ratio=r, epsilon=1e-2)),
        "criticalkv:base=snapkv": lambda r: kvpress.CriticalKVPress(kvpress.SnapKVPress(compression_ratio=r)),
        "kvzip": lambda r: kvpress.KVzipPress(compression_ratio=r),
    }


def is_gemma3_text(model) -> bool:
    from transformers import Gemma3ForCausalLM

    return isinstance(model, Gemma3ForCausalLM)


def treat_gemma3_causal_lm_like_conditional_generation() -> None:
    """kvpress skips sliding-window layers for Gemma3ForConditionalGeneration; do the same for Gemma3ForCausalLM."""
    from kvpress.presses import base_press
    from transformers import Gemma3ForCausalLM, Gemma3ForConditionalGeneration

    base_press.Gemma3ForConditionalGeneration = (Gemma3ForConditionalGeneration, Gemma3ForCausalLM)


def string_match(metric: str, prediction: str, answers: list[str]) -> float:
    """RULER's string_match_all / string_match_part (the same scorer as tokenzip.bench.scoring)."""
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


def masked_per_layer(model) -> list[int]:
    """Entries each layer's attention masks out (summed over heads): kvpress's per-head eviction by fake keys."""
    counts = []
    for layer in model.model.layers:
        masked = getattr(layer.self_attn, "masked_key_indices", None)
        counts.append(0 if masked is None else int(masked[0].numel()))
    return counts


class AnswerProbe:
    """Marks when the pipeline starts answering (prefill and compression are over) and records the cache then:
    bytes held, entries per layer and the entries masked per layer."""

    def __init__(self, pipe, model):
        self.pipe, self.model, self.answer_start = pipe, model, None

    def __enter__(self):
        original = self.pipe.generate_answer

        def generate_answer(question_ids, cache, context_length, max_new_tokens):
            self.answer_start = time.perf_counter()
            self.bytes = sum(layer_bytes(layer) for layer in cache.layers)
            self.entries = [layer_entries(layer) for layer in cache.layers]
            self.masked = masked_per_layer(self.model)
            return original(question_ids=question_ids, cache=cache, context_length=context_length,
                            max_new_tokens=max_new_tokens)

        self.pipe.generate_answer = generate_answer
        return self

    def __exit__(self, *exc):
        del self.pipe.generate_answer  # back to the class's method


def in_rounds(lines: list[dict], samples: int | None) -> list[tuple[str, list[dict]]]:
    """Questions grouped by sample, sample 0 of every task and length first, then sample 1, ...; with
    ``samples``, only the first ``samples`` of each task and length."""
    by_sample: dict[str, list[dict]] = {}
    for line in lines:
        by_sample.setdefault(line["id"], []).append(line)
    groups = [(sid, qs) for sid, qs in by_sample.items() if samples is None or qs[0]["index"] < samples]
    order = {sid: i for i, (sid, _) in enumerate(groups)}
    return sorted(groups, key=lambda g: (g[1][0]["index"], order[g[0]]))


def git_commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", help="JSONL written by `tokenzip bench --export-tasks`")
    parser.add_argument("out", help="directory for kvpress.jsonl (e.g. the tokenzip run directory)")
    parser.add_argument("--model-dir", "--gemma-dir", dest="model_dir", required=True,
                        help="tokenzip's cached model (safetensors + config + tokenizer), e.g. the directory "
                             "`tokenzip.models.smollm2.ensure_cache()` returns")
    parser.add_argument("--presses", nargs="+", default=["knorm", "snapkv", "streaming_llm", "tova"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5])
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, help="only the first N questions of the file")
    parser.add_argument("--samples", type=int, help="only the first N samples of each task and length")
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
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = model.to(args.device).eval()
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    gemma3 = is_gemma3_text(model)
    if gemma3:
        treat_gemma3_causal_lm_like_conditional_generation()
        print("kvpress anchor: Gemma3ForCausalLM gets kvpress's Gemma 3 treatment: its sliding-window layers are "
              "NOT compressed (kvpress does this only for Gemma3ForConditionalGeneration; without it the next "
              "forward fails on a mask-size mismatch), and its pipeline gets a cache built from the model config "
              "(DynamicCache(config=...)) so that masks are sized per layer type. Only the global layers are "
              "compressed, as in tokenzip.", file=sys.stderr)
    pipe = KVPressTextGenerationPipeline(model=model, tokenizer=tok, device=torch.device(args.device))
    sliding = [getattr(layer.self_attn, "is_sliding", False) for layer in model.model.layers]
    compressed_layers = [i for i, s in enumerate(sliding) if not (gemma3 and s)]
    print(f"kvpress anchor: {type(model).__name__}, {len(sliding)} layers, {len(compressed_layers)} compressed",
          file=sys.stderr)

    lines = [json.loads(line) for line in Path(args.tasks).read_text().splitlines() if line.strip()]
    lines = lines[: args.limit] if args.limit else lines
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
                        "tokenizers": version("tokenizers"), "torch": torch.__version__,
                        "python": platform.python_version()},
           "device": f"{args.device} ({torch.get_num_threads()} threads)", "host": platform.node(), "pid": os.getpid(),
           "git_commit": git_commit(Path(__file__).resolve().parents[2])}
    failed: dict[str, str] = {}
    model_name = lines[0].get("model", Path(args.model_dir).name)
    notes = ["kvpress: compression runs inside the prefill (prefill_seconds includes it, KVzip's reconstruction "
             "too)"]
    notes.append("sliding-window layers not compressed" if gemma3 else "every layer compressed (whole cache)")

    with torch.no_grad():  # warm-up, untimed
        pipe._forward({"context_ids": tok(lines[0]["context"][:2000], return_tensors="pt").input_ids,
                       "questions_ids": [tok("Q", add_special_tokens=False, return_tensors="pt").input_ids]},
                      max_new_tokens=2, cache=DynamicCache(config=model.config))
    with open(rows_path, "a") as handle:
        for sample_id, questions in in_rounds(lines, args.samples):
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
                        torch.manual_seed(0)
                        with torch.no_grad(), AnswerProbe(pipe, model) as probe:
                            start = time.perf_counter()
                            answer = pipe._forward({"context_ids": context_ids, "questions_ids": [ids]},
                                                   max_new_tokens=q["max_new_tokens"], press=press,
                                                   cache=DynamicCache(config=model.config))[0]
                            end = time.perf_counter()
                        predictions.append(answer)
                        prefill += probe.answer_start - start
                        decode += end - probe.answer_start
                        new += len(tok(answer, add_special_tokens=False).input_ids)
                except Exception as exc:  # a press that does not run on this model: say so, go on
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    print(f"kvpress anchor: {name} fails on {type(model).__name__}: {failed[name][:300]}",
                          file=sys.stderr)
                    continue
                heads = model.config.num_key_value_heads
                kept = sum(probe.entries[i] - probe.masked[i] / heads for i in compressed_layers)
                kept /= len(compressed_layers)
                masked = sum(probe.masked)
                scores = [string_match(q["metric"], p, q["answer"]) for p, q in zip(predictions, questions)]
                row = {
                    "key": key, "engine": "kvpress", "model": model_name, "stage": "kv",
                    "seed": first.get("seed"), "prompt_style": "exported", "query_aware": False,
                    "shared_prefill": False, "dtype": "float32", "device_kind": args.device.split(":")[0],
                    "max_new_tokens": None, "tasks_file_sha256": None, "task": first["task"], "task_kind": "qa",
                    "length": first["length"], "sample": first["index"], "metric": first["metric"],
                    "metadata": first.get("metadata", {}), "answers": [q["answer"] for q in questions],
                    "scores": scores, "score": sum(scores) / len(scores), "method": name, "ratio": ratio,
                    "predictions": predictions, "tokens_in": n, "tokens_kept": kept, "achieved_ratio": 1 - kept / n,
                    "prefill_seconds": prefill, "compress_seconds": None, "decode_seconds": decode, "new_tokens": new,
                    "decode_tokens_per_second": new / decode if decode else None, "cache_bytes_before": None,
                    "cache_bytes": probe.bytes, "masked_entries": masked, "peak_rss_bytes": peak_rss(),
                    "peak_cuda_bytes": None, "rss_peak_scope": scope, **env, "warmed_up": True,
                    "notes": notes + (["evicted per head by masking (fake keys): cache_bytes is the dense cache "
                                       "still held"] if masked else []),
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
