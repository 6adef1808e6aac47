"""Do tokenzip and kvpress keep the same cache entries? Overlap per layer on one exported sample.

    python benchmarks/anchors/kvpress_kept.py TASKS.jsonl SAMPLE KVPRESS.pt --model-dir DIR   # kvpress venv
    python benchmarks/anchor_overlap.py TASKS.jsonl KVPRESS.pt --model smollm2-135m [--pair TZSPEC KVNAME ...]

tokenzip prefills the sample's context once (capturing what every method needs) and compresses it with each
method at each ratio kvpress_kept.py saved; the kept entries are read from each layer's selection (indices and
validity, per KV head). For each (tokenzip method, kvpress press) pair and ratio it prints ``overlap``: the
share of kvpress's kept entries that tokenzip keeps too (mean over layers, then the lowest and highest layer),
``kept``: entries kept per head and layer by each, and, with ``--per-layer``, every layer's overlap. Pairs default
to the same name on both sides; ``--pair cur:proxy=norm cur`` sets a tokenzip variant beside a kvpress press.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

import tokenzip as tz
from tokenzip.bench.stages import build_method


def kept_masks(pre: Any, method: Any, n_layers: int) -> torch.Tensor:
    """``(L, H_kv, N)`` bool: what ``method`` keeps of ``pre``'s cache, per layer and KV head."""
    captured: dict[int, torch.Tensor] = {}
    original = method.compress_model

    def capture(contexts):
        results = original(contexts)
        for ctx, result in zip(contexts, results):
            mask = torch.zeros(ctx.keys.shape[:3], dtype=torch.bool)
            indices = result.indices.expand(*ctx.keys.shape[:2], -1)
            valid = torch.ones_like(indices, dtype=torch.bool)
            if result.valid is not None:
                valid = result.valid.expand_as(indices)
            mask.scatter_(-1, indices, valid)
            captured[ctx.layer_idx] = mask[0]
        return results

    method.compress_model = capture
    pre.compress(method)
    return torch.stack([captured[i] for i in range(n_layers)])


def chat_prefix_tokens(tok: Any) -> int:
    """Tokens of the chat template before the user's content (system prompt and user header; 0 without a template):
    the part of the context kvpress's KVzipPress does not reconstruct."""
    if not getattr(tok, "chat_template", None):
        return 0
    marker = "\u241e"
    rendered = tok.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                       add_generation_prompt=True)
    return len(tok(rendered.split(marker)[0], add_special_tokens=False).input_ids)


def overlap(tz_kept: torch.Tensor, kp_kept: torch.Tensor) -> torch.Tensor:
    """Per layer: the share of kvpress's kept entries that tokenzip keeps too."""
    return (tz_kept & kp_kept).sum((1, 2)).float() / kp_kept.sum((1, 2)).clamp_min(1).float()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks")
    parser.add_argument("kvpress", help="the .pt file kvpress_kept.py wrote")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("TZSPEC", "KVNAME"), default=[],
                        help="compare tokenzip's TZSPEC with kvpress's KVNAME (repeatable)")
    parser.add_argument("--per-layer", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    saved = torch.load(args.kvpress)
    kp = saved["kept"]
    lines = [json.loads(x) for x in Path(args.tasks).read_text().splitlines() if x.strip()]
    line = next(x for x in lines if x["id"] == saved["sample"])
    cells = sorted({tuple(key.rsplit("@", 1)) for key in kp if "@" in key})
    ratios = sorted({float(r) for _, r in cells})
    kv_names = sorted({name for name, _ in cells})
    pairs = [(name, name) for name in kv_names if "[" not in name] + [tuple(p) for p in args.pair]
    pairs += [(name.split("[")[0], name) for name in kv_names if "[" in name]

    model, tok = tz.load_model(args.model, dtype=torch.float32)
    ids = tok(line["context"], return_tensors="pt").input_ids
    if not torch.equal(ids[0], saved["ids"]):
        raise SystemExit("tokenzip's token ids differ from the ones kvpress scored")
    n_layers = model.config.num_hidden_layers
    prefix = chat_prefix_tokens(tok)
    specs = sorted({spec for spec, _ in pairs})
    built = {(spec, r): build_method("kv", spec, r) for spec in specs for r in ratios}
    with torch.no_grad():
        pre = tz.kv.prefill(model, tok, line["context"], list(built.values()))
        print(f"| tokenzip | kvpress | ratio | overlap (mean over layers) | lowest layer | highest layer "
              f"| kept tz | kept kp | first {prefix} (chat prefix) kept tz | kp |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        per_layer = []
        for spec, kv_name in pairs:
            for r in ratios:
                key = f"{kv_name}@{r:g}"
                if key not in kp:
                    continue
                tz_kept = kept_masks(pre, build_method("kv", spec, r), n_layers)
                share = overlap(tz_kept, kp[key])
                heads = tz_kept.shape[0] * tz_kept.shape[1]
                print(f"| {spec} | {kv_name} | {r:g} | {100 * share.mean():.1f}% | {100 * share.min():.1f}% "
                      f"(layer {int(share.argmin())}) | {100 * share.max():.1f}% (layer {int(share.argmax())}) "
                      f"| {tz_kept.sum() / heads:.1f} | {kp[key].sum() / heads:.1f} "
                      f"| {100 * tz_kept[..., :prefix].float().mean():.0f}% "
                      f"| {100 * kp[key][..., :prefix].float().mean():.0f}% |")
                per_layer.append((spec, kv_name, r, share))
    if args.per_layer:
        print("\nper layer overlap (%), layers 0..L-1:")
        for spec, kv_name, r, share in per_layer:
            print(f"{spec} vs {kv_name} @ {r:g}: " + " ".join(f"{100 * s:.0f}" for s in share.tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
