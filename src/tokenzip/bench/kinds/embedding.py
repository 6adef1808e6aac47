"""``embedding``: the mean cosine of compressed to uncompressed embeddings (plus top-10 neighbour agreement)."""

from tokenzip.bench.kinds.base import EMBEDDINGS, TaskKind, register_kind

EMBEDDING = register_kind(TaskKind(
    name="embedding", header="cosine to uncompressed", measures=EMBEDDINGS,
    score=lambda sample, measurement: {"score": measurement["cosine"]}, columns=("neighbours",)))
