"""What runs while a layers-stage method is attached: token bookkeeping between layers.

The model adapter (``tokenzip.models.inmodel``) calls :class:`LayersRuntime` at four points of each
forward pass: ``begin`` before the first layer (which tokens are real and which may leave),
``mask`` inside every attention call (the attention mask for the current, reduced token set, with
ToMe's proportional-attention bias when tokens were merged), ``capture`` after an attention call at
a reduction layer (the statistics the method asked for) and ``after_layer`` on every layer's output
(reduce when the schedule says so; restore the input length after the last layer).

The state tracks, per batch row: which slots hold real tokens (rows may keep different numbers of
tokens; shorter rows are padded and masked), each slot's size (input tokens merged into it), its
input position, and for every input token the slot it lives in now (or -1 once pruned, with the
hidden state it had when it left).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from tokenzip.errors import TokenzipError
from tokenzip.layers.base import LayersMethod, LayersReport, Step
from tokenzip.layers.schedule import plan_row
from tokenzip.ops.merging import merge_compact


@dataclass
class TokenState:
    """Where the tokens of one forward pass are (B rows, M current slots, N input tokens)."""

    valid: torch.Tensor  # (B, M)
    candidates: torch.Tensor  # (B, M)
    size: torch.Tensor  # (B, M) float
    position: torch.Tensor  # (B, M) input index of each slot's own token
    source: torch.Tensor  # (B, N) slot of each input token, -1 once pruned (or padding)
    proxy: torch.Tensor  # (B, N) slot whose output stands for each input token (restore), -1 if none
    exited: torch.Tensor | None  # (B, N, C) hidden state of pruned input tokens when they left
    plan: torch.Tensor  # (steps, B) tokens to remove at each reduction layer
    carry: torch.Tensor  # (B,) removals a layer could not make, moved to the next one
    input_tokens: list[int]
    candidate_tokens: list[int]
    first: torch.Tensor  # (B,) input position of each row's first real token
    entering: dict[int, float]  # layer -> mean real tokens entering it
    captured: dict[int, dict[str, torch.Tensor]]
    changed: bool = False


class LayersRuntime:
    """Applies ``method`` to one layer stack of ``num_layers`` layers of the given architecture."""

    def __init__(self, method: LayersMethod, architecture: str, model_type: str, num_layers: int) -> None:
        self.method = method
        self.architecture = architecture
        self.model_type = model_type
        self.num_layers = num_layers
        self.steps = (([-1] if method.reduces_input(architecture) else [])
                      + method.reduction_layers(architecture, num_layers))
        self.step_of = {layer: k for k, layer in enumerate(self.steps)}
        self.causal = architecture in ("decoder", "vlm")
        self.align = "right" if self.causal else "left"
        self.restore = method.restore or ("none" if self.causal else "nearest")
        lead, trail = method.default_protect(architecture)
        self.lead = lead if method.protect is None else method.protect
        self.trail = trail if method.protect_last is None else method.protect_last
        self.prop_attn = bool(getattr(method, "prop_attn", False))
        self.state: TokenState | None = None
        self.report: LayersReport | None = None  # of the last forward that reduced tokens
        self.chunk: Any = None  # the prefill chunk being read (tokenzip.models.chunking.PrefillChunk), or None
        self.chunk_candidates = self.chunk_removed = 0  # candidates and planned removals of the chunks so far

    def reset(self) -> None:
        """A new prefill starts: forget the last one's token state."""
        self.state = None

    def reduces_input(self) -> bool:
        """True when the method removes tokens before the first layer (a VLM's image tokens)."""
        return -1 in self.step_of

    # --- forward start ---------------------------------------------------------------------------
    def begin(self, hidden: torch.Tensor, padding: torch.Tensor | None = None,
              candidates: torch.Tensor | None = None, chunk: Any = None) -> None:
        """A forward pass starts with ``hidden`` (B, N, C); ``padding`` (B, N) is 1 for real tokens.

        ``candidates`` (B, N) overrides which tokens may leave (e.g. the image tokens of a VLM);
        by default every real token except the first ``protect`` and last ``protect_last`` ones.
        ``chunk`` (a :class:`tokenzip.models.chunking.PrefillChunk`): the pass reads one chunk of a chunked prefill
        (one unpadded row): the chunk's tokens are this pass's input, the protected ones are the first and last of
        the whole prefill, each chunk loses what the ratio owes on the candidates so far (so the whole prefill loses
        what it would in one pass), and the report adds up the chunks.
        """
        b, n, _ = hidden.shape
        device = hidden.device
        real = torch.ones(b, n, dtype=torch.bool, device=device) if padding is None else padding.to(device).bool()
        if real.shape != (b, n):
            raise TokenzipError(f"attention_mask has shape {tuple(real.shape)} but the input has {b} x {n} tokens")
        counts = real.sum(-1)
        self.chunk = chunk
        if chunk is not None:
            self.method.check_chunked()
            if chunk.first:
                self.chunk_candidates = self.chunk_removed = 0
        if candidates is None:
            rank = real.long().cumsum(-1) - 1
            total = counts[:, None]
            if chunk is not None:  # positions in the whole prefill
                rank, total = rank + chunk.start, torch.full_like(total, chunk.total)
            from_end = total - 1 - rank
            candidates = real & (rank >= self.lead) & (from_end >= self.trail)
            short = (total[:, 0] < self.lead + self.trail).nonzero().flatten().tolist()
            if short:
                row = short[0]
                raise TokenzipError(
                    f"layers.{self.method.name}: batch row {row} has {int(total[row, 0])} tokens, fewer than the "
                    f"{self.lead} leading + {self.trail} trailing tokens it protects; pass a longer input or "
                    "lower protect/protect_last"
                )
        candidates = candidates.to(device).bool() & real
        n_cand = candidates.sum(-1).tolist()
        plan = torch.tensor([self._plan(c, row) for row, c in enumerate(n_cand)], dtype=torch.long).T
        index = torch.arange(n, device=device).expand(b, n)
        self.state = TokenState(
            valid=real, candidates=candidates, size=torch.ones(b, n, device=device, dtype=torch.float32),
            position=index, source=torch.where(real, index, torch.full_like(index, -1)),
            proxy=torch.where(real, index, torch.full_like(index, -1)), exited=None,
            plan=plan.to(device).reshape(len(self.steps), b), carry=torch.zeros(b, dtype=torch.long, device=device),
            input_tokens=counts.tolist(), candidate_tokens=n_cand, first=real.long().argmax(-1),
            entering={0: float(counts.float().mean())},
            captured={},
        )

    def _plan(self, n_candidates: int, row: int) -> tuple[int, ...]:
        m = self.method
        if m.removed is not None:
            target = sum(m.removed)
        elif m.budget is not None:
            target = max(0, n_candidates - m.budget)
        elif self.chunk is not None:  # what the chunks so far owe, so the whole prefill loses what it would at once
            seen = self.chunk_candidates + n_candidates
            target = (seen - m.kept(seen)) - self.chunk_removed
            self.chunk_candidates, self.chunk_removed = seen, self.chunk_removed + target
        else:
            target = n_candidates - m.kept(n_candidates)
        what = f" (batch row {row}; protected tokens cannot leave)"
        return plan_row(f"layers.{m.name}", n_candidates, target, len(self.steps), m.schedule, m.merges,
                        m.removed, what)

    # --- inside attention ------------------------------------------------------------------------
    def wants(self, layer: int) -> frozenset[str]:
        """Statistics to capture from layer ``layer``'s attention (empty unless it reduces this pass)."""
        st = self.state
        if st is None or layer not in self.step_of:
            return frozenset()
        if not bool((st.plan[self.step_of[layer]] + st.carry).any()):
            return frozenset()
        return self.method.needs

    def capture(self, layer: int, stats: dict[str, torch.Tensor]) -> None:
        if self.state is not None:
            self.state.captured[layer] = stats

    def mask(self, default: Any, dtype: torch.dtype, window: int | None = None) -> Any:
        """The attention mask for the current token set; ``default`` (the model's own) until tokens left.

        Bidirectional: (B, 1, 1, M), boolean (True = attend) or, once tokens were merged and the
        method uses proportional attention, an additive float bias ``log(size)`` (ToMe). Causal
        (decoders): (B, 1, M, M) in slot order (= input order), with a sliding ``window`` measured
        on the tokens' input positions, not on slots.
        """
        st = self.state
        if st is None or not st.changed:
            return default
        valid = st.valid
        if self.causal:
            m = valid.shape[1]
            allowed = torch.ones(m, m, dtype=torch.bool, device=valid.device).tril()[None] & valid[:, None, :]
            if window is not None:
                allowed &= (st.position[:, :, None] - st.position[:, None, :]) < window
            allowed |= torch.eye(m, dtype=torch.bool, device=valid.device)[None] & ~valid[:, :, None]
            return allowed[:, None]
        if self.prop_attn and bool((st.size != 1).any()):
            bias = st.size.log().to(dtype).masked_fill(~valid, torch.finfo(dtype).min)
            return bias[:, None, None, :]
        if bool(valid.all()):
            return None
        return valid[:, None, None, :]

    def reduce_input(self, hidden: torch.Tensor) -> torch.Tensor:
        """The reduction before the first layer (a VLM's image tokens pruned before the language model)."""
        st = self.state
        if st is None or -1 not in self.step_of:
            return hidden
        remove = st.plan[self.step_of[-1]]
        if bool(remove.any()):
            hidden = self._reduce(-1, hidden, remove, last_step=len(self.steps) == 1)
        st.entering[0] = float(st.valid.sum(-1).float().mean())
        return hidden

    # --- between layers --------------------------------------------------------------------------
    def after_layer(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        st = self.state
        if st is None:
            return hidden
        if layer in self.step_of:
            k = self.step_of[layer]
            remove = st.plan[k] + st.carry
            if bool(remove.any()):
                hidden = self._reduce(layer, hidden, remove, last_step=k == len(self.steps) - 1)
            st.captured.pop(layer, None)
        if layer + 1 < self.num_layers:
            st.entering[layer + 1] = float(st.valid.sum(-1).float().mean())
        else:
            hidden = self._finish(hidden)
        return hidden

    def _reduce(self, layer: int, hidden: torch.Tensor, remove: torch.Tensor, last_step: bool) -> torch.Tensor:
        st = self.state
        assert st is not None
        step = Step(layer=layer, num_layers=self.num_layers, hidden=hidden, valid=st.valid,
                    candidates=st.candidates, size=st.size, position=st.position, remove=remove,
                    first=st.first, captured=st.captured.get(layer, {}))
        dest = self.method.reduce(step)
        index = torch.arange(hidden.shape[1], device=hidden.device).expand_as(st.valid)
        self._check(dest, index, remove)
        stays = (dest == index) & st.valid
        removed = st.valid.sum(-1) - stays.sum(-1)
        st.carry = remove - removed
        if last_step and bool((st.carry > 0).any()):
            row = int((st.carry > 0).nonzero()[0])
            raise TokenzipError(
                f"layers.{self.method.name}: removed {int(removed[row])} of the {int(remove[row])} tokens due at "
                f"layer {layer} (batch row {row}); the schedule cannot reach the requested ratio. "
                "Reduce after more layers or ask for less."
            )
        x, size, keep_index, keep_valid = merge_compact(hidden, st.size, dest, st.valid, self.align)
        # where each old slot's tokens live now: their destination's new slot, or -1 when pruned
        new_slot = torch.full_like(index, -1).scatter_reduce(
            1, keep_index, torch.where(keep_valid, torch.arange(keep_index.shape[1], device=index.device), -1),
            reduce="amax",
        )
        old_to_new = torch.where((dest >= 0) & st.valid, new_slot.gather(1, dest.clamp(min=0)), -1)
        pruned = (dest < 0) & st.valid
        represent = old_to_new  # the slot standing for each old slot's tokens at the output
        if self.restore == "nearest" and bool(pruned.any()):
            nearest = nearest_staying(hidden, stays, pruned)
            represent = torch.where(pruned, new_slot.gather(1, nearest), old_to_new)
        if self.restore == "exit" and bool(pruned.any()):
            if st.exited is None:
                st.exited = hidden.new_zeros(*st.source.shape, hidden.shape[-1])
            leaving = (st.proxy >= 0) & pruned.gather(1, st.proxy.clamp(min=0))
            left = hidden.gather(1, st.proxy.clamp(min=0)[..., None].expand(-1, -1, hidden.shape[-1]))
            st.exited = torch.where(leaving[..., None], left, st.exited)
        st.source = torch.where(st.source >= 0, old_to_new.gather(1, st.source.clamp(min=0)), -1)
        st.proxy = torch.where(st.proxy >= 0, represent.gather(1, st.proxy.clamp(min=0)), -1)
        st.valid = keep_valid
        st.candidates = st.candidates.gather(1, keep_index) & keep_valid
        st.size = size
        st.position = st.position.gather(1, keep_index)
        st.changed = True
        return x

    def _check(self, dest: torch.Tensor, index: torch.Tensor, remove: torch.Tensor) -> None:
        st = self.state
        name = f"layers.{self.method.name}"
        if dest.shape != st.valid.shape or dest.dtype != torch.long:
            raise RuntimeError(f"{name}.reduce returned {tuple(dest.shape)} {dest.dtype}, expected "
                               f"{tuple(st.valid.shape)} long")
        moved = (dest != index) & st.valid
        if bool((moved & ~st.candidates).any()):
            raise RuntimeError(f"{name}.reduce removed a protected token")
        target = dest.clamp(min=0)
        if bool((moved & (dest >= 0) & (dest.gather(1, target) != target)).any()):
            raise RuntimeError(f"{name}.reduce merged a token into one that does not stay")
        if bool(((moved.sum(-1)) > remove).any()):
            raise RuntimeError(f"{name}.reduce removed more tokens than the schedule asked for")

    def _finish(self, hidden: torch.Tensor) -> torch.Tensor:
        st = self.state
        assert st is not None
        kept = st.valid.sum(-1).tolist()
        entering = [st.entering.get(i, st.entering[max(k for k in st.entering if k <= i)])
                    for i in range(self.num_layers)]
        report = LayersReport(st.input_tokens, st.candidate_tokens, kept, entering)
        if self.chunk is not None and not self.chunk.first and self.report is not None:
            report = _added(self.report, report)  # a chunked prefill: the chunks so far
        self.report = report
        self.method.last_report = self.report  # for `with tz.compress(model, method)`, which yields the model
        if not st.changed or self.restore == "none":
            return hidden
        slot = st.proxy.clamp(min=0)[..., None].expand(-1, -1, hidden.shape[-1])
        out = hidden.gather(1, slot)
        fill = st.exited if st.exited is not None else torch.zeros_like(out)
        return torch.where((st.proxy >= 0)[..., None], out, fill)


def _added(a: LayersReport, b: LayersReport) -> LayersReport:
    """Two chunks of one prefill as one report: tokens in, candidates, kept and tokens per layer added up."""
    def add(x: list, y: list) -> list:
        return [p + q for p, q in zip(x, y)]

    return LayersReport(add(a.input_tokens, b.input_tokens), add(a.candidates, b.candidates), add(a.kept, b.kept),
                        add(a.tokens_per_layer, b.tokens_per_layer))


def nearest_staying(hidden: torch.Tensor, stays: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """For every pruned slot, the staying slot with the most similar hidden state (cosine).

    Returns (B, M) old slot indices (meaningful where ``pruned``); only the pruned rows are compared.
    """
    b, m, c = hidden.shape
    unit = torch.nn.functional.normalize(hidden.float(), dim=-1)
    p = int(pruned.sum(-1).max())
    rows = (~pruned).to(torch.int8).argsort(dim=-1, stable=True)[:, :p]  # the pruned slots first
    sim = unit.gather(1, rows[..., None].expand(-1, -1, c)) @ unit.transpose(1, 2)  # (B, P, M)
    best = sim.masked_fill(~stays[:, None, :], float("-inf")).argmax(dim=-1)
    return torch.zeros(b, m, dtype=torch.long, device=hidden.device).scatter_(1, rows, best)


@contextlib.contextmanager
def attach_layers(model: Any, method: LayersMethod) -> Iterator[LayersRuntime]:
    """Find ``model``'s layer stack, check the method supports it, and hook a :class:`LayersRuntime` in (the layers
    stage's counterpart of :func:`tokenzip.kv.runtime.attach_kv`; both are reached through
    :func:`tokenzip.hooks.attach_method`)."""
    # lazy: keeps layers.runtime's own imports free of transformers
    from tokenzip.models.inmodel import find_stack, hooked

    stack = find_stack(model)
    method.check_architecture(stack.architecture, stack.model_type)
    runtime = LayersRuntime(method, stack.architecture, stack.model_type, len(stack.layers))
    with hooked(stack, runtime):
        yield runtime
