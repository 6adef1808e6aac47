"""Pure tensor functions shared by the three stages: which tokens matter, and what becomes of the others.

Kept pure the way ToMe's ``merge.py`` is: tensors in, tensors out; no runtime objects, no transformers, no model
knowledge. ``tests/ops/test_purity.py`` holds them to it: an ops module imports only torch, numpy, math, the standard
library, other ops modules and ``tokenzip.errors``.

Reducers: :mod:`~tokenzip.ops.topk` (top-k keep, budgets, gathering), :mod:`~tokenzip.ops.merging` (KVMerger, ToMe
soft matching, size-weighted merging), :mod:`~tokenzip.ops.quantize` (KIVI), :mod:`~tokenzip.ops.packing` (kept
entries stored without padding when heads keep different numbers) and :mod:`~tokenzip.ops.selection` (prompt units
under a cost budget). Scorers: :mod:`~tokenzip.ops.attention` (attention statistics),
:mod:`~tokenzip.ops.geometry` (norms, similarity, leverage: no attention needed), :mod:`~tokenzip.ops.rope` (undoing
rotary embeddings), :mod:`~tokenzip.ops.information` (self-information and its relatives) and
:mod:`~tokenzip.ops.spans` (token values over words, sentences and groups).
"""
