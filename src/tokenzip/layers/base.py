"""The layers-stage method protocol: after chosen layers, each method decides which tokens leave.

``with tz.compress(model, tz.get_method("tome", ratio=0.5))`` finds the model's layer stack
(``tokenzip.models.inmodel``), and after each layer in the method's schedule hands the method a
:class:`Step`: the layer's output hidden states, which tokens may leave, how many must, and the
statistics it asked for (attention keys, [CLS] attention, ...), captured from the layer's own
attention call. The method returns a destination per token (stay, merge into another token, or be
pruned: see ``tokenzip.ops.merging``); the runtime applies it, tracks sizes and where every input token
went, and (by default) restores the input length at the end of the stack so downstream code (mean
pooling, dense heads) works unchanged.

``ratio`` is the fraction of the *candidate* tokens removed by the end of the stack: every real
(non-padding) token except the protected ones ([CLS] in encoders and ViTs; for decoders, everything
outside the span a method prunes). ``budget`` is the number of candidates left. Achieved figures are
in ``method.last_report`` after each forward.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from tokenzip.errors import TokenzipError
from tokenzip.layers.schedule import SCHEDULES
from tokenzip.method import Method, registered

ARCHITECTURES = ("encoder", "vision", "decoder", "vlm")
RESTORE = ("nearest", "exit", "none")
CAPTURES = ("keys", "key_l1", "cls_attention", "last_attention", "attention")


@dataclass
class Step:
    """One reduction point: the output of layer ``layer`` and what the method may use to reduce it.

    Shapes: B batch rows, M current token slots (padded to the longest row), C hidden size.
    """

    layer: int
    num_layers: int
    hidden: torch.Tensor  # (B, M, C) the layer's output
    valid: torch.Tensor  # (B, M) real token in this slot
    candidates: torch.Tensor  # (B, M) valid tokens this method may remove (not protected)
    size: torch.Tensor  # (B, M) input tokens each slot stands for (merging adds up)
    position: torch.Tensor  # (B, M) input position of each slot's token
    remove: torch.Tensor  # (B,) how many tokens must leave each row at this step
    first: torch.Tensor | None = None  # (B,) input position of each row's first real token (left padding)
    captured: dict[str, torch.Tensor] = field(default_factory=dict)  # see CAPTURES

    def need(self, name: str) -> torch.Tensor:
        if name not in self.captured:
            raise RuntimeError(f"statistic {name!r} was not captured at layer {self.layer}")
        return self.captured[name]

    def prune(self, keep: torch.Tensor) -> torch.Tensor:
        """The destinations of a pruning decision: tokens in ``keep`` stay, the others leave."""
        index = torch.arange(keep.shape[1], device=keep.device).expand_as(keep)
        return torch.where(keep & self.valid, index, torch.full_like(index, -1))


@dataclass
class LayersReport:
    """What one forward pass actually did (counted on real tokens, per batch row)."""

    input_tokens: list[int]  # real tokens per row
    candidates: list[int]  # removable tokens per row
    kept: list[int]  # tokens left after the last reduction layer, per row
    tokens_per_layer: list[float]  # mean real tokens entering each layer (over rows)

    @property
    def ratio(self) -> float:
        """Fraction of the candidate tokens removed (the method's ``ratio`` as achieved)."""
        cand = sum(self.candidates)
        return (sum(self.input_tokens) - sum(self.kept)) / cand if cand else 0.0

    @property
    def compute_fraction(self) -> float:
        """Mean tokens per layer relative to the input: a proxy for the token-proportional work left."""
        n = sum(self.input_tokens) / max(len(self.input_tokens), 1)
        return sum(self.tokens_per_layer) / (len(self.tokens_per_layer) * n) if n and self.tokens_per_layer else 1.0


@dataclass
class LayersMethod(Method):
    """Base of in-model methods: reduce hidden-state tokens after chosen layers.

    Parameters shared by every method:
    ``layers``: layer indices after which tokens leave (default: the method's choice for the family);
    ``schedule``: how a ratio/budget is spread over them (``constant`` or ``decreasing``);
    ``removed``: explicit counts per layer instead of a ratio/budget;
    ``protect``: leading tokens that never leave (default 1 for [CLS] in encoders/ViTs);
    ``protect_last``: trailing tokens that never leave (decoders: the question/last tokens);
    ``restore``: how the model's output gets its input length back (default: ``"nearest"`` for
    encoders and ViTs, ``"none"`` for decoders, whose logits are for the tokens left): ``"nearest"``
    (merged tokens are copied to every position they stand for; a pruned token takes the final state of the staying
    token most similar to it when it left), ``"exit"`` (a pruned token keeps the hidden state it had
    when it left: early exit) or ``"none"`` (the output keeps only the tokens left; rows are padded).
    """

    stage: ClassVar[str] = "layers"
    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    needs: ClassVar[frozenset[str]] = frozenset()
    merges: ClassVar[bool] = False
    bounds = {"protect": (0, None), "protect_last": (0, None)}
    choices = {"schedule": tuple(SCHEDULES)}

    layers: tuple[int, ...] | None = None
    schedule: str = "constant"
    removed: tuple[int, ...] | None = None
    protect: int | None = None
    protect_last: int | None = None
    restore: str | bool | None = None
    last_report: LayersReport | None = field(default=None, init=False, repr=False, compare=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kinds" in cls.__dict__:  # the name before ``architectures``; a method written for it keeps working
            warnings.warn(f"{cls.__name__}.kinds is deprecated: name the architectures a layers method supports "
                          "in `architectures`", DeprecationWarning, stacklevel=2)
            cls.architectures = tuple(cls.__dict__["kinds"])

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.restore is True or self.restore is False:
            self.restore = "nearest" if self.restore else "none"
        if self.restore is not None and self.restore not in RESTORE:
            raise TokenzipError(f"restore must be one of {', '.join(RESTORE)} (or True/False), got {self.restore!r}")
        if self.layers is not None:
            self.layers = _int_tuple("layers", self.layers, minimum=-10_000)
            if not self.layers:
                raise TokenzipError("layers must name at least one layer (or be None for the method's default)")
        if self.removed is not None:
            self.removed = _int_tuple("removed", self.removed, minimum=0)
            if self.ratio or self.budget is not None:
                raise TokenzipError("give either removed=(counts per layer) or ratio/budget, not both")

    def params(self) -> dict[str, Any]:
        out = super().params()
        out.pop("last_report", None)
        return out

    # --- what subclasses define -------------------------------------------------------------
    def reduce(self, step: Step) -> torch.Tensor:
        """Destination per token (B, M): itself to stay, another slot to merge into, -1 to leave."""
        raise NotImplementedError

    def default_layers(self, architecture: str, num_layers: int) -> tuple[int, ...]:
        """Where tokens leave when ``layers`` is not given: after every layer but the last."""
        return tuple(range(num_layers - 1))

    def reduces_input(self, architecture: str) -> bool:
        """True when the method removes tokens before the first layer (a VLM's image tokens, before the LM)."""
        return False

    def default_protect(self, architecture: str) -> tuple[int, int]:
        """(leading, trailing) tokens never removed when ``protect``/``protect_last`` are not given."""
        return (1, 0) if architecture in ("encoder", "vision") else (4, 32)

    # --- shared machinery ----------------------------------------------------------------------
    def is_noop(self) -> bool:
        """True when nothing can be removed whatever the input (ratio 0, no budget, no counts)."""
        return not self.ratio and self.budget is None and not any(self.removed or ())

    def check_chunked(self) -> None:
        """Refuse what cannot be split over the chunks of a chunked prefill (where each chunk is this method's
        input and loses ``ratio`` of its candidates): a budget or counts of tokens, which are for a whole input."""
        if self.budget is not None or self.removed is not None:
            what = f"budget={self.budget}" if self.budget is not None else f"removed={self.removed}"
            raise TokenzipError(f"layers.{self.name}: {what} counts tokens of a whole prefill; a chunked prefill "
                                "(chunk_size) gives it one chunk at a time: give a ratio instead")

    def check_architecture(self, architecture: str, model_type: str) -> None:
        if architecture not in self.architectures:
            raise TokenzipError(
                f"layers.{self.name} does not support {model_type} models ({architecture}); it supports: "
                f"{', '.join(self.architectures)}. Methods for {architecture} models: "
                f"{', '.join(methods_for(architecture))}"
            )

    def reduction_layers(self, architecture: str, num_layers: int) -> list[int]:
        """The resolved, sorted layer indices (negative ones count from the end)."""
        chosen = self.layers if self.layers is not None else self.default_layers(architecture, num_layers)
        resolved = sorted({i + num_layers if i < 0 else i for i in chosen})
        bad = [i for i in resolved if not 0 <= i < num_layers]
        if bad:
            raise TokenzipError(f"layers={tuple(chosen)}: the model has {num_layers} layers (0..{num_layers - 1})")
        if self.removed is not None and len(self.removed) != len(resolved):
            raise TokenzipError(
                f"removed={self.removed} gives {len(self.removed)} counts for {len(resolved)} reduction layers "
                f"{tuple(resolved)}; give one count per layer"
            )
        return resolved


def methods_for(architecture: str) -> list[str]:
    """Names of the layers methods that support an architecture (e.g. ``"decoder"``)."""
    return sorted(cls.name for cls in registered("layers") if architecture in getattr(cls, "architectures", ()))


def _int_tuple(name: str, value: Any, minimum: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        items = tuple(value)
    except TypeError as exc:
        raise TokenzipError(f"{name} must be a sequence of integers, got {value!r}") from exc
    if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items):
        raise TokenzipError(f"{name} must hold integers >= {minimum}, got {value!r}")
    return items
