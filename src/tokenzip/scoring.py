"""Shared scorers: which tokens matter. Pure tensor functions, no model code.

Every scorer returns a score per token where **higher means more important** (kept first). Shapes
follow the KV cache layout: keys/values ``(B, H_kv, N, D)``, queries ``(B, H_q, W, D)``, scores
``(B, H_kv, N)`` for per-head scorers; in-model scorers use ``(B, N, C)`` hidden states and return
``(B, N)``.
"""

from __future__ import annotations
