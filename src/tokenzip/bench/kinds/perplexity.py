"""``perplexity``: the continuation's mean negative log-likelihood in nats (lower is better; vs none: increase)."""

from tokenzip.bench.kinds.base import DIFFERENCE, NLL, TaskKind, register_kind

PERPLEXITY = register_kind(TaskKind(
    name="perplexity", header="NLL (nats; vs none = increase)", measures=NLL,
    score=lambda sample, measurement: {"score": measurement["nll"]}, higher_is_better=False, vs_none=DIFFERENCE))
