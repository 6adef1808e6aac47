"""Which cache entries kvpress 0.5.5's presses keep on one exported sample: per layer and KV head, saved for
benchmarks/anchor_overlap.py to set beside tokenzip's.

Runs in the kvpress environment (kvpress_setup.sh). One dense prefill of the sample's context records, per
layer, what a press's forward hook receives (the attention input ``hidden_states``, the layer's keys and values,
the rotary embeddings); every ScorerPress is then applied to exactly those tensors as its hook would
(``press.score`` then the top ``compute_n_kept`` per head, ``ScorerPress.compress``'s selection). A scorer press
does not change the prefill it runs in (it rewrites the cache after each layer's attention, which later layers of
the same pass do not read), so this is the selection of a real run; ``torch.manual_seed(0)`` before each press,
as in kvpress_run.py, gives the same Gaussian sketches. KVzipPress runs for real (prefill + reconstruction
passes, once); its final selection (``compress_post``, kvpress's own code) is then repeated for every ratio.

Diagnostic variants (not kvpress's defaults; each changes one thing to match tokenzip):
- ``keydiff[raw-mean]``: the anchor is the mean of the raw keys, not of the unit keys;
- ``compactor[scaled]``: the non-causal attention logits scaled by 1/sqrt(head_dim) (kvpress's are not);
- ``expected_attention[no-cov]``: ``use_covariance=False``;
- ``expected_attention[no-cov,window64]``: also the query statistics from the last 64 queries only.

    python benchmarks/anchors/kvpress_kept.py TASKS.jsonl SAMPLE_ID OUT.pt --model-dir DIR --ratios 0.5 0.875
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kvpress_run import presses  # noqa: E402

SCORERS = ("snapkv", "expected_attention", "compactor", "keydiff", "knorm", "streaming_llm", "lagkv", "cur",
           "leverage")


def variants(kvpress) -> dict:
    """kvpress presses with one thing changed to match tokenzip (for diagnosis only)."""
    from kvpress.presses.non_causal_attention_press import NonCausalAttnPress

    class RawMeanKeyDiff(kvpress.KeyDiffPress):
        def score(self, module, hidden_states, keys, values, attentions, kwargs):
            return -F.cosine_similarity(keys, keys.mean(dim=2, keepdim=True), dim=-1)

    class ScaledNonCausal(NonCausalAttnPress):
        @staticmethod
        def non_causal_chunked_attn(q, k, chunk_size):
            return NonCausalAttnPress.non_causal_chunked_attn(q / math.sqrt(q.shape[-1]), k, chunk_size)

    def scaled_compactor(r):
        press = kvpress.CompactorPress(compression_ratio=r)
        press._non_causal_press = ScaledNonCausal(compression_ratio=r, chunk_size=press.chunk_size)
        return press

    class WindowExpectedAttention(kvpress.ExpectedAttentionPress):
        window: int = 64

        def get_query_statistics(self, module, hidden_states):
            from kvpress.utils import get_prerope_query_states

            q_len = hidden_states.shape[1]
            mu = get_prerope_query_states(module, hidden_states[:, -self.window:]).mean(dim=2)
            return self.apply_avg_rope(module, mu, None, q_len)

    return {
        "keydiff[raw-mean]": lambda r: RawMeanKeyDiff(compression_ratio=r),
        "compactor[scaled]": scaled_compactor,
        "expected_attention[no-cov]": lambda r: kvpress.ExpectedAttentionPress(compression_ratio=r,
                                                                               use_covariance=False),
        "expected_attention[no-cov,window64]": lambda r: WindowExpectedAttention(compression_ratio=r,
                                                                                  use_covariance=False),
    }


def capture_prefill(model, ids, cache):
    """Dense prefill; per layer, the attention hook's kwargs (hidden_states, position_embeddings, ...)."""
    seen: dict[int, dict] = {}

    def hook(module, args, kwargs, output):
        seen[module.layer_idx] = {k: v for k, v in kwargs.items() if k in ("hidden_states", "position_embeddings",
                                                                           "cache_position", "attention_mask")}

    handles = [layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in model.model.layers]
    try:
        model.model(input_ids=ids, past_key_values=cache)
    finally:
        for h in handles:
            h.remove()
    return seen


def kept_by_scorer(model, press, seen, cache, n) -> torch.Tensor:
    """``(L, H_kv, N)`` bool: the entries ``press`` keeps in each layer (ScorerPress's selection)."""
    from kvpress.utils import compute_n_kept

    press.post_init_from_model(model)
    masks = []
    for layer in model.model.layers:
        module = layer.self_attn
        module.rotary_emb = model.model.rotary_emb  # what BasePress.__call__ sets
        kw = seen[module.layer_idx]
        keys, values = cache.layers[module.layer_idx].keys, cache.layers[module.layer_idx].values
        scores = press.score(module, kw["hidden_states"], keys, values, None, kw)
        top = scores.topk(compute_n_kept(n, press.compression_ratio), dim=-1).indices
        mask = torch.zeros(scores.shape, dtype=torch.bool).scatter_(-1, top, True)
        masks.append(mask[0])
    return torch.stack(masks)


def kept_by_kvzip(kvpress, model, ids, ratios, config) -> dict[str, torch.Tensor]:
    """KVzipPress run for real once; its compress_post (kvpress's selection) repeated for every ratio."""
    from transformers import DynamicCache

    press = kvpress.KVzipPress(compression_ratio=ratios[0])
    original = press.compress_post
    out: dict[str, torch.Tensor] = {}
    n = ids.shape[1]
    heads = model.config.num_key_value_heads

    def every_ratio(model_):
        for r in ratios:
            press.compression_ratio = r
            original(model_)
            masks = torch.ones(len(model_.model.layers), heads, n, dtype=torch.bool)
            for i, layer in enumerate(model_.model.layers):
                _, h, s = layer.self_attn.masked_key_indices
                masks[i, h, s] = False
            out[f"kvzip@{r:g}"] = masks
        out["kvzip-scores"] = press.score_val[:, 0].float().clone()

    press.compress_post = every_ratio
    with press(model):
        model.model(input_ids=ids, past_key_values=DynamicCache(config=config))
    for layer in model.model.layers:
        layer.self_attn.masked_key_indices = None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks")
    parser.add_argument("sample", help="the sample id, e.g. 'niah_multikey|2048|0'")
    parser.add_argument("out", help="where to save the kept masks (torch.save)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5, 0.875])
    parser.add_argument("--presses", nargs="+", default=list(SCORERS) + ["kvzip"])
    parser.add_argument("--variants", action="store_true", help="also the diagnostic variants")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import kvpress
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

    line = next(json.loads(x) for x in Path(args.tasks).read_text().splitlines() if json.loads(x)["id"] == args.sample)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    ids = tok(line["context"], return_tensors="pt").input_ids
    if ids.shape[1] != line.get("context_tokens", ids.shape[1]):
        raise SystemExit("the context tokenizes differently from the export")
    n = ids.shape[1]
    factories = {**presses(kvpress), **(variants(kvpress) if args.variants else {})}
    names = [p for p in args.presses if p != "kvzip"] + (list(variants(kvpress)) if args.variants else [])
    kept: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        start = time.perf_counter()
        seen = capture_prefill(model, ids, cache)
        print(f"prefill {time.perf_counter() - start:.1f} s", file=sys.stderr)
        for name in names:
            for r in args.ratios:
                torch.manual_seed(0)
                kept[f"{name}@{r:g}"] = kept_by_scorer(model, factories[name](r), seen, cache, n)
        del seen, cache
        if "kvzip" in args.presses:
            start = time.perf_counter()
            kept.update(kept_by_kvzip(kvpress, model, ids, args.ratios, model.config))
            print(f"kvzip {time.perf_counter() - start:.1f} s", file=sys.stderr)
    torch.save({"sample": args.sample, "n": n, "ids": ids[0], "kept": kept}, args.out)
    print(f"saved {len(kept)} masks to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
