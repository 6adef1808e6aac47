"""Bytes per token at every smaller vocabulary size, from one BPE merge list.

BPE vocabularies nest: the tokenizer trained to N tokens, cut to its first n merges, is the one
training to the smaller size would have produced. So a single training run gives the whole
efficiency-versus-vocabulary curve (SuperBPE, Liu et al., 2025, arXiv 2503.13423, measures its
curves this way). For a SuperBPE merge list, sizes up to the transition point are plain BPE and
sizes above it are SuperBPE with fewer superword merges.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from tokenzip.tokenizers.bpe import truncated, vocab_sizes_by_merges


def default_sizes(full: int, base: int, points: int = 8, extra: Sequence[int] = ()) -> list[int]:
    """``points`` vocabulary sizes spread evenly between the alphabet and ``full`` (plus ``extra``)."""
    step = (full - base) / points
    sizes = {int(round(base + step * k)) for k in range(1, points + 1)} | {full}
    sizes |= {s for s in extra if base < s <= full}
    return sorted(sizes)


def bytes_per_token_curve(tok: Any, texts: Sequence[str], sizes: Sequence[int] | None = None, points: int = 8,
                          progress: bool = False) -> list[dict[str, float]]:
    """Bytes per token on ``texts`` for the BPE tokenizer ``tok`` cut to each vocabulary size in ``sizes``."""
    by_merges = vocab_sizes_by_merges(tok)
    if sizes is None:
        sizes = default_sizes(by_merges[-1], by_merges[0], points)
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)
    rows = []
    for size in tqdm(sizes, desc="bytes/token by vocabulary size", disable=not progress):
        n = min(bisect.bisect_left(by_merges, size), len(by_merges) - 1)
        cut = tok if n == len(by_merges) - 1 else truncated(tok, n)
        tokens = sum(len(e.ids) for e in cut.encode_batch(list(texts), add_special_tokens=False))
        rows.append({"vocab_size": by_merges[n], "merges": n, "tokens": tokens,
                     "bytes_per_token": total_bytes / tokens if tokens else float("nan")})
    return rows
