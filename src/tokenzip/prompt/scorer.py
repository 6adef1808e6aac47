"""The scorer: a small causal LM that says how surprising each token of a text is.

``get_scorer("gemma-3-270m")`` loads the model once per process (later calls reuse it); a
``(model, tokenizer)`` pair or a :class:`CausalScorer` is used as given. All scoring goes through
:meth:`CausalScorer.surprisal`: one forward pass per batch of sequences (right-padded, so real tokens
never see padding), then the output layer applied to just the positions that are needed, in slices,
so the ``T x vocabulary`` logits never exist at once (Gemma 3's vocabulary has 262k entries).
Texts longer than the model's context are scored in windows, each conditioned on the text before it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tokenzip.errors import TokenzipError
from tokenzip.models.loading import load_model
from tokenzip.ops.information import self_information


@dataclass
class CausalScorer:
    """Self-information of tokens under ``model`` (any causal LM ``tz.load_model`` can load)."""

    model: Any
    tokenizer: Any
    window: int = 1024  # tokens scored per forward sequence
    overlap: int = 64  # tokens of preceding text each window is conditioned on
    batch_tokens: int = 8192  # padded tokens per forward pass
    head_rows: int = 256  # output-layer rows computed at once
    forwards: int = field(default=0, init=False)  # forward passes run (for tests and benchmarks)

    def __post_init__(self) -> None:
        config = self.model.config
        config = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        max_positions = int(getattr(config, "max_position_embeddings", 0) or 0) or 2048
        self.max_positions = max_positions
        self.window = max(16, min(self.window, max_positions // 2))
        self.softcap = getattr(config, "final_logit_softcapping", None)
        bos = getattr(self.tokenizer, "bos_token_id", None)
        self.bos = [int(bos)] if bos is not None else []
        self.device = next(self.model.parameters()).device

    # -- tokenization ---------------------------------------------------------------------------

    def encode(self, text: str) -> tuple[list[int], np.ndarray]:
        """Token ids of ``text`` (no special tokens) and their character spans ``(T, 2)``."""
        if not text:
            return [], np.zeros((0, 2), dtype=np.int64)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        return list(enc["input_ids"]), spans

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    # -- the model --------------------------------------------------------------------------------

    @torch.inference_mode()
    def surprisal(self, sequences: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[torch.Tensor]:
        """For each ``(context_ids, target_ids)``, the self-information (nats) of every target token
        given the beginning-of-text token, the context and the targets before it.

        Sequences are packed into as few forward passes as ``batch_tokens`` allows.
        """
        results: list[torch.Tensor | None] = [None] * len(sequences)
        rows = [(i, [*self.bos, *map(int, c), *map(int, t)], len(t)) for i, (c, t) in enumerate(sequences)]
        for i, ids, n_target in rows:
            if len(ids) > self.max_positions:
                raise TokenzipError(f"a scorer sequence of {len(ids)} tokens exceeds the model's "
                                    f"{self.max_positions} positions; score it in windows")
            if n_target == 0:
                results[i] = torch.zeros(0)
        order = sorted((r for r in rows if r[2] > 0), key=lambda r: -len(r[1]))
        batch: list[tuple[int, list[int], int]] = []
        for row in order:
            if batch and len(batch[0][1]) * (len(batch) + 1) > self.batch_tokens:
                self._run(batch, results)
                batch = []
            batch.append(row)
        if batch:
            self._run(batch, results)
        return [r if r is not None else torch.zeros(0) for r in results]

    def _run(self, batch: list[tuple[int, list[int], int]], results: list) -> None:
        length = max(len(ids) for _, ids, _ in batch)
        pad = int(getattr(self.tokenizer, "pad_token_id", None) or 0)
        input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.long)
        for b, (_, ids, _) in enumerate(batch):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            mask[b, : len(ids)] = 1
        hidden = self._hidden(input_ids.to(self.device), mask.to(self.device))
        self.forwards += 1
        # Position p predicts token p + 1: gather the positions that predict each target token.
        rows_b, rows_p, targets, owners = [], [], [], []
        for b, (i, ids, n_target) in enumerate(batch):
            first = len(ids) - n_target  # index of the first target token
            positions = torch.arange(max(first, 1) - 1, len(ids) - 1)
            rows_b.append(torch.full((len(positions),), b))
            rows_p.append(positions)
            targets.append(torch.tensor(ids[max(first, 1) :]))
            owners.append((i, n_target, first == 0))
        index_b, index_p = torch.cat(rows_b), torch.cat(rows_p)
        target = torch.cat(targets).to(self.device)
        info = torch.empty(len(target))
        head = self.model.get_output_embeddings()
        for s in range(0, len(target), self.head_rows):
            h = hidden[index_b[s : s + self.head_rows], index_p[s : s + self.head_rows]]
            logits = head(h)
            if self.softcap:
                logits = torch.tanh(logits / self.softcap) * self.softcap
            info[s : s + self.head_rows] = self_information(logits, target[s : s + self.head_rows]).cpu()
        pos = 0
        for i, n_target, unconditioned_first in owners:
            n = n_target - 1 if unconditioned_first else n_target
            values = info[pos : pos + n]
            if unconditioned_first:  # no beginning-of-text token: the first token has no prediction
                values = torch.cat([values.max(dim=0, keepdim=True).values if n else torch.zeros(1), values])
            results[i] = values
            pos += n

    def _hidden(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        decoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else None
        if decoder is None or decoder is self.model:
            raise TokenzipError(f"the scorer {type(self.model).__name__} is not a causal LM with an output layer")
        return decoder(input_ids=input_ids, attention_mask=mask).last_hidden_state

    # -- whole texts --------------------------------------------------------------------------------

    def text_information(self, text: str, context: str = "") -> tuple[np.ndarray, torch.Tensor]:
        """Character spans ``(T, 2)`` and self-information ``(T,)`` of every token of ``text``.

        The text is cut into windows of ``window`` tokens, each conditioned on ``context`` (for the
        first) or on the ``overlap`` tokens before it; all windows go through batched forwards.
        """
        ids, spans = self.encode(text)
        if not ids:
            return spans, torch.zeros(0)
        context_ids = self.ids(context)[-self.overlap :] if context else []
        sequences = []
        for s in range(0, len(ids), self.window):
            before = ids[max(0, s - self.overlap) : s] if s else context_ids
            sequences.append((before, ids[s : s + self.window]))
        return spans, torch.cat(self.surprisal(sequences))


@functools.lru_cache(maxsize=4)
def _load(name: str) -> CausalScorer:
    model, tokenizer = load_model(name)
    return CausalScorer(model, tokenizer)


def get_scorer(scorer: Any) -> CausalScorer:
    """A :class:`CausalScorer` from a model name or path (loaded once per process), a ``(model,
    tokenizer)`` pair, or a scorer."""
    if isinstance(scorer, CausalScorer):
        return scorer
    if isinstance(scorer, tuple) and len(scorer) == 2:
        return _pair_scorer(*scorer)
    if isinstance(scorer, str):
        return _load(scorer)
    raise TokenzipError(
        f"scorer must be a model name (e.g. 'gemma-3-270m'), a local path, or a (model, tokenizer) pair; got {scorer!r}"
    )


_PAIRS: dict[tuple[int, int], CausalScorer] = {}


def _pair_scorer(model: Any, tokenizer: Any) -> CausalScorer:
    key = (id(model), id(tokenizer))
    if key not in _PAIRS:
        _PAIRS.clear()  # keep at most one, so test models are not kept alive
        _PAIRS[key] = CausalScorer(model, tokenizer)
    return _PAIRS[key]
