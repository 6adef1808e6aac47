"""StreamingLLM: attention sinks plus a window of recent tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenzip.kv.base import KVMethod, LayerContext
from tokenzip.method import register
from tokenzip.ops.geometry import sink_recent_scores


@register
@dataclass
class StreamingLLM(KVMethod):
    """Keep the first ``sinks`` tokens (attention sinks) and the most recent ones.

    Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024, arXiv 2309.17453.
    Positions are counted on real tokens, so left padding does not move the sinks.
    Chunked prefill: the sinks and the newest entries after each chunk, which is the paper's own streaming
    setting; the final cache holds the same tokens as a dense prefill compressed at the end.
    """

    name = "streaming_llm"
    paper = "Xiao et al. 2024, arXiv 2309.17453"
    chunkable = True

    bounds = {"sinks": (0, None)}

    sinks: int = 4

    def score(self, ctx: LayerContext) -> torch.Tensor:
        b, _, n = ctx.keys.shape[:3]
        valid = ctx.token_valid if ctx.token_valid is not None and ctx.token_valid.ndim == 2 else None
        pos = (valid.long().cumsum(-1) - 1) if valid is not None else torch.arange(n, device=ctx.keys.device)[None]
        return sink_recent_scores(pos.expand(b, n), self.sinks)[:, None, :]
