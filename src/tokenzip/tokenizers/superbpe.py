"""SuperBPE: subword merges first, then superword merges that span spaces.

Liu, Hayase, Hofmann, Oh, Smith and Choi, 2025, "SuperBPE: Space Travel for Language Models",
arXiv 2503.13423. The algorithm is a pretokenization curriculum for byte-level BPE:

1. Stage 1 learns ordinary BPE merges under whitespace pretokenization, up to the transition
   vocabulary size ``t`` (here: stock ``tokenizers`` BPE training, see ``train.py``).
2. Stage 2 resumes from those merges on pieces that may contain spaces
   (``pretokenize.SUPERWORD_PATTERN``) and keeps learning merges, most frequent pair first, until
   the vocabulary has ``V`` tokens. A merge is vetoed when the token it would create spans more
   than ``max_words`` words (maximal runs of non-space characters) or contains a colon followed by
   a space, as in the paper's released tokenizers.

Memory stays bounded: stage 2 counts distinct pieces in a table of at most ``max_piece_types``
entries (when it fills up, the least frequent half is dropped and the dropped share is reported),
and pairs seen fewer than ``min_count`` times are never indexed (a pair of existing tokens can only
lose occurrences as merges proceed, so they could never be chosen). Counts are Python integers
(no 32-bit overflow, a known ``tokenizers`` issue). Merges that would re-create an existing token
are vetoed, so each merge adds exactly one token and truncating the merge list gives the smaller
vocabulary (BPE's nesting), and stock BPE inference reproduces the trainer's segmentation.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from tokenzip.tokenizers.bpe import SPECIAL_TOKENS, bpe_state, build_bpe, train_bpe
from tokenzip.tokenizers.pretokenize import BYTE_TO_CHAR, splitter, token_bytes

log = logging.getLogger(__name__)

MAX_WORDS = 4
FORBIDDEN = (b": ",)
_SHIFT = 21
_MASK = (1 << _SHIFT) - 1
_NON_SPACE_RUN = re.compile(rb"[^ \t\n\r\f\v]+")


def words_in(token: bytes) -> int:
    """Words a token spans: maximal runs of non-space bytes (``b" of the"`` -> 2, ``b", and"`` -> 2)."""
    return len(_NON_SPACE_RUN.findall(token))


def superword_veto(token: bytes, max_words: int = MAX_WORDS, forbidden: Sequence[bytes] = FORBIDDEN) -> str | None:
    """Why SuperBPE's constraints forbid ``token`` (``"words"``: more than ``max_words`` words;
    ``"forbidden"``: contains a forbidden substring such as ``": "``), or None when it is allowed."""
    if words_in(token) > max_words:
        return "words"
    if any(f in token for f in forbidden):
        return "forbidden"
    return None


def superword_allowed(token: bytes, max_words: int = MAX_WORDS, forbidden: Sequence[bytes] = FORBIDDEN) -> bool:
    """SuperBPE's merge constraints: at most ``max_words`` words and none of the ``forbidden`` substrings."""
    return superword_veto(token, max_words, forbidden) is None


@dataclass
class PieceTable:
    """Distinct pretokenized pieces and their counts, in a table of bounded size."""

    max_types: int = 4_000_000
    counts: dict[str, int] = field(default_factory=dict)
    dropped_occurrences: int = 0
    dropped_types: int = 0
    total_occurrences: int = 0

    def add(self, pieces: Iterable[str]) -> None:
        counts = self.counts
        for piece in pieces:
            counts[piece] = counts.get(piece, 0) + 1
            self.total_occurrences += 1
        if len(counts) > self.max_types:
            self._prune()

    def _prune(self) -> None:
        """Drop the least frequent half of the table (ties broken by the piece, so it is deterministic)."""
        ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = self.max_types // 2
        for _, count in ranked[keep:]:
            self.dropped_occurrences += count
        self.dropped_types += len(ranked) - keep
        self.counts = dict(ranked[:keep])
        log.warning("tokenzip: superword piece table full (%d types); dropped the least frequent half", self.max_types)


@dataclass
class MergeLog:
    """What stage 2 did: merges learned, pairs vetoed by each constraint, the last merge's count."""

    merges: list[tuple[int, int]] = field(default_factory=list)
    vetoed_words: int = 0
    vetoed_forbidden: int = 0
    vetoed_duplicate: int = 0
    last_count: int = 0
    stopped: str = ""


def _pair(a: int, b: int) -> int:
    return (a << _SHIFT) | b


def _merge_sequence(seq: list[int], a: int, b: int, z: int) -> list[int]:
    out: list[int] = []
    i, n = 0, len(seq)
    while i < n:
        if i + 1 < n and seq[i] == a and seq[i + 1] == b:
            out.append(z)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def learn_merges(
    sequences: list[list[int]],
    counts: list[int],
    vocab: list[bytes],
    target_size: int,
    veto: Callable[[bytes], str | None],
    min_count: int = 2,
    progress: bool = True,
) -> MergeLog:
    """Continue byte-pair merging on counted token sequences until ``vocab`` has ``target_size`` tokens.

    ``sequences`` (token ids per distinct piece, modified in place) and ``vocab`` (bytes per id,
    appended to) describe the state after the existing merges. At each step the most frequent
    adjacent pair whose merged token ``veto`` does not forbid, and which is not already a token, is
    merged everywhere (ties: smallest pair of ids).
    """
    if target_size > _MASK:
        raise ValueError(f"vocabulary of {target_size} tokens is too large (at most {_MASK})")
    existing = set(vocab)
    full: dict[int, int] = defaultdict(int)
    for seq, count in zip(sequences, counts):
        for a, b in zip(seq, seq[1:]):
            full[_pair(a, b)] += count
    pair_counts = {k: v for k, v in full.items() if v >= min_count}
    del full
    where: dict[int, list[int]] = defaultdict(list)
    for i, seq in enumerate(sequences):
        for key in {_pair(a, b) for a, b in zip(seq, seq[1:])}:
            if key in pair_counts:
                where[key].append(i)
    heap = [(-c, k) for k, c in pair_counts.items()]
    heapq.heapify(heap)
    banned: set[int] = set()
    result = MergeLog()
    bar = tqdm(total=max(0, target_size - len(vocab)), desc="superword merges", unit="merge", disable=not progress)
    while len(vocab) < target_size:
        if not heap:
            result.stopped = "no pair occurs twice any more"
            break
        neg, key = heapq.heappop(heap)
        current = pair_counts.get(key, 0)
        if key in banned or current <= 0:
            continue
        if current != -neg:  # stale entry: counts only fall for existing pairs, so re-queue at the true count
            heapq.heappush(heap, (-current, key))
            continue
        if current < min_count:
            result.stopped = f"no pair occurs {min_count} times any more"
            break
        a, b = key >> _SHIFT, key & _MASK
        token = vocab[a] + vocab[b]
        if token in existing:
            result.vetoed_duplicate += 1
            banned.add(key)
            continue
        reason = veto(token)
        if reason is not None:
            if reason == "words":
                result.vetoed_words += 1
            else:
                result.vetoed_forbidden += 1
            banned.add(key)
            continue
        z = len(vocab)
        vocab.append(token)
        existing.add(token)
        result.merges.append((a, b))
        result.last_count = current
        delta: dict[int, int] = defaultdict(int)
        for i in sorted(set(where.pop(key, ()))):
            seq = sequences[i]
            merged = _merge_sequence(seq, a, b, z)
            if len(merged) == len(seq):
                continue  # stale index entry
            count = counts[i]
            for x, y in zip(seq, seq[1:]):
                delta[_pair(x, y)] -= count
            fresh = set()
            for x, y in zip(merged, merged[1:]):
                k = _pair(x, y)
                delta[k] += count
                if x == z or y == z:
                    fresh.add(k)
            for k in fresh:
                where[k].append(i)
            sequences[i] = merged
        for k, d in delta.items():
            if d == 0:
                continue
            if k in pair_counts:
                pair_counts[k] += d
                if d > 0:
                    heapq.heappush(heap, (-pair_counts[k], k))
            elif d > 0:
                pair_counts[k] = d
                heapq.heappush(heap, (-d, k))
        pair_counts.pop(key, None)
        if len(heap) > 4 * len(pair_counts) + 1_000_000:  # drop stale entries now and then
            heap = [(-c, k) for k, c in pair_counts.items() if k not in banned and c > 0]
            heapq.heapify(heap)
        bar.update(1)
    bar.close()
    if not result.stopped:
        result.stopped = "reached the vocabulary size"
    return result


def train_superbpe(
    texts: Sequence[str],
    vocab_size: int,
    transition: int,
    max_words: int = MAX_WORDS,
    special_tokens: Sequence[str] | None = None,
    min_count: int = 2,
    max_piece_types: int = 4_000_000,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Train a SuperBPE tokenizer: BPE up to ``transition`` tokens, then superword merges up to ``vocab_size``.

    Returns the stock ``tokenizers.Tokenizer`` (byte-level BPE whose pre-tokenizer keeps words
    together, see ``pretokenize.py``) and a dict describing both stages.
    """
    specials = tuple(SPECIAL_TOKENS if special_tokens is None else special_tokens)
    stage1 = train_bpe(texts, transition, specials, min_frequency=min_count, progress=progress)
    vocab, merges = bpe_state(stage1)
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise RuntimeError("stage-1 vocabulary ids are not contiguous")

    table = PieceTable(max_piece_types)
    split = splitter(superwords=True)
    for doc in tqdm(texts, desc="superword pieces", unit="doc", disable=not progress):
        table.add(piece for piece, _ in split.pre_tokenize_str(doc))
    pieces = sorted(table.counts)
    counts = [table.counts[p] for p in pieces]
    encoder = build_bpe(vocab, merges, superwords=False, special_tokens=())
    canonical = list(range(vocab_size))  # share int objects between sequences
    sequences = [[canonical[i] for i in enc.ids] for enc in encoder.encode_batch(pieces, add_special_tokens=False)]
    table.counts = {}
    del pieces

    id_bytes: list[bytes] = [b""] * len(vocab)
    for token, i in vocab.items():
        # special tokens never occur inside pieces; 0xFF never occurs in UTF-8, so they can never be re-created
        id_bytes[i] = b"\xff" + token.encode("utf-8") if token in specials else token_bytes(token)
    n_stage1 = len(vocab)
    result = learn_merges(sequences, counts, id_bytes, vocab_size,
                          veto=lambda t: superword_veto(t, max_words), min_count=min_count, progress=progress)
    new_vocab = dict(vocab)
    for i in range(n_stage1, len(id_bytes)):
        new_vocab["".join(BYTE_TO_CHAR[b] for b in id_bytes[i])] = i
    names = {i: t for t, i in new_vocab.items()}
    new_merges = list(merges) + [(names[a], names[b]) for a, b in result.merges]
    tok = build_bpe(new_vocab, new_merges, superwords=True, special_tokens=specials)
    info = {
        "transition": transition,
        "stage1_vocab": n_stage1,
        "stage1_merges": len(merges),
        "stage2_merges": len(result.merges),
        "max_words": max_words,
        "forbidden": [f.decode() for f in FORBIDDEN],
        "vetoed_over_max_words": result.vetoed_words,
        "vetoed_forbidden_substring": result.vetoed_forbidden,
        "vetoed_existing_token": result.vetoed_duplicate,
        "last_merge_count": result.last_count,
        "stopped": result.stopped,
        "piece_types": len(sequences),
        "piece_occurrences": table.total_occurrences,
        "piece_table_limit": max_piece_types,
        "dropped_piece_types": table.dropped_types,
        "dropped_piece_occurrences": table.dropped_occurrences,
    }
    return tok, info
