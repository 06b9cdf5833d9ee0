"""Batching: ids -> length-bucketed, padded batches (what the training loop and search eat).

    batches = bucket_batches(src_lens, tgt_lens, batch_size=64, seed=epoch_seed)
    for batch in iterate(id_pairs, batches): ...      # Batch(src, src_len, tgt_in, tgt_out, index)

``torch`` is imported where it is needed (reading and scoring text do not need it).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .readers import Pairs
from .tokenizer import BOS, EOS, PAD

if TYPE_CHECKING:
    from torch import Tensor


class Batch(NamedTuple):
    src: Tensor  # (B, S) source ids, PAD-padded
    src_len: Tensor  # (B,)
    tgt_in: Tensor  # (B, T) BOS + target
    tgt_out: Tensor  # (B, T) target + EOS
    index: Tensor  # (B,) positions of these pairs in the data set

    def to(self, device) -> "Batch":
        if str(device).startswith("cuda"):  # pinned host memory: asynchronous copies
            return Batch(*(t.pin_memory().to(device, non_blocking=True) for t in self))
        return Batch(*(t.to(device) for t in self))

    def masked(self) -> "Batch":
        """The same batch with every target position masked (PAD): it adds nothing to a loss
        masked on padding, and no gradient (a distributed run's ghost shard)."""
        import torch

        return self._replace(tgt_out=torch.full_like(self.tgt_out, PAD))


def pad(seqs: Sequence[Sequence[int]], value: int = PAD) -> Tensor:
    import torch

    T = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(T, 1)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out  # (B, T)


def unpad(rows: Sequence[Sequence[int]]) -> List[List[int]]:
    """Each row's ids before its first EOS or PAD: the inverse of :func:`pad` for outputs
    and shifted targets."""
    out = []
    for row in rows:
        ids = []
        for tok in row:
            if tok in (EOS, PAD):
                break
            ids.append(tok)
        out.append(ids)
    return out


def collate(src: Sequence[Sequence[int]], tgt: Optional[Sequence[Sequence[int]]],
            index: Sequence[int]) -> Batch:
    import torch

    src_t = pad(src)  # (B, S)
    src_len = torch.tensor([max(1, len(s)) for s in src], dtype=torch.long)
    if tgt is None:
        tgt_in = tgt_out = torch.zeros(len(src), 1, dtype=torch.long)
    else:
        tgt_in = pad([[BOS] + list(t) for t in tgt])  # (B, T)
        tgt_out = pad([list(t) + [EOS] for t in tgt])  # (B, T)
    return Batch(src_t, src_len, tgt_in, tgt_out, torch.as_tensor(list(index), dtype=torch.long))


def bucket_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], batch_size: int,
                   batch_tokens: Optional[int] = None, seed: Optional[int] = None
                   ) -> List[List[int]]:
    """Group indices of similar length into batches.

    Sorted by (source, target) length, with ties broken at random when ``seed`` is given;
    cut into batches of ``batch_size`` sentences, or of at most ``batch_tokens`` padded tokens
    (``B * max(S, T)``); the batch order is shuffled with ``seed`` (None: kept in length order).
    """
    rng = random.Random(seed)
    order = list(range(len(src_lens)))
    if seed is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (src_lens[i], tgt_lens[i]))
    batches, cur, longest = [], [], 0
    for i in order:
        L = max(src_lens[i], tgt_lens[i]) + 1
        if cur and ((batch_tokens is None and len(cur) >= batch_size) or
                    (batch_tokens is not None and max(longest, L) * (len(cur) + 1) > batch_tokens)):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, L)
    if cur:
        batches.append(cur)
    if seed is not None:
        rng.shuffle(batches)
    return batches


def padding_fraction(lens: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions in the batches (lengths ``lens``)."""
    real = sum(lens[i] for b in batches for i in b)
    total = sum(len(b) * max(lens[i] for i in b) for b in batches if b)
    return 1.0 - real / max(1, total)


class IdPairs(NamedTuple):
    """A split as ids, with the original strings kept for scoring."""

    src: List[List[int]]
    tgt: List[List[int]]
    src_text: List[str]
    tgt_text: List[str]


def encode_pairs(tok, pairs: Pairs) -> IdPairs:
    src_text, tgt_text = pairs
    return IdPairs(tok.encode_src(src_text), tok.encode_tgt(tgt_text), src_text, tgt_text)


def filter_length(data: IdPairs, max_len: int) -> Tuple[IdPairs, int]:
    """Drop pairs longer than ``max_len`` pieces on either side, and empty ones."""
    keep = [i for i in range(len(data.src))
            if 0 < len(data.src[i]) <= max_len and 0 < len(data.tgt[i]) <= max_len]
    dropped = len(data.src) - len(keep)
    return IdPairs(*([x[i] for i in keep] for x in data)), dropped


def iterate(data: IdPairs, batches: Sequence[Sequence[int]], with_tgt: bool = True
            ) -> Iterator[Batch]:
    for b in batches:
        yield collate([data.src[i] for i in b], [data.tgt[i] for i in b] if with_tgt else None, b)
