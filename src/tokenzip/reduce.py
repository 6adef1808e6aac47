"""Shared reducers: what to do with the tokens that are not kept. Pure tensor functions, no model code.

Top-k keep, bipartite soft matching merge (with size tracking), cluster merge, per-layer/per-head
budget allocation and quantization all live here, once, for every stage.
"""

from __future__ import annotations
