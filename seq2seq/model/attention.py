"""Attention over the encoder states: Bahdanau (additive) and Luong (general). Stateless.

Both take the keys precomputed once per batch by :meth:`keys` (so a decoding loop projects
the encoder states once, not once per step) and any number of queries at a time (one per
step when stepping, the whole target at once on the teacher-forced fast path).

    keys = attn.keys(enc_out)                                  # (B, S, 2H) -> (B, S, A)
    ctx, weights = attn(query, keys, enc_out, pad_mask)        # query (B, Tq, Hq)
    # ctx (B, Tq, 2H); weights (B, Tq, S), rows sum to 1, exactly 0 where pad_mask is True

A training loop that steps (input feeding, teacher forcing below 1) passes a
:class:`~seq2seq.kernels.value_grads.ValueGrads` too, whose values it attends over; it sums their
gradient over the steps in one product.
"""

from contextlib import contextmanager
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.kernels.value_grads import ValueGrads


def _cpu_autocast(t: Tensor) -> bool:
    return t.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def _cpu_low_precision(t: Tensor) -> bool:
    """``t`` is bf16 or float16 under CPU autocast (autocast leaves float64 alone)."""
    return _cpu_autocast(t) and t.dtype in (torch.bfloat16, torch.float16)


@contextmanager
def _score_precision(query: Tensor, keys: Tensor, values: Tensor):
    """Yields ``(query, keys, values)`` for the score and context products: cast to float32,
    with autocast off inside, when ``query (B, Tq, .)`` holds many steps under CPU autocast
    (the teacher-forced fast path without input feeding); else unchanged.
    In bf16 every (target length, source length) pair would be a new matmul shape, and
    oneDNN keeps a primitive (about 2 MB with its backward) for each one it has seen: 1-2 GB
    over a run. One step at a time (decoding, input feeding) only the source length varies."""
    if query.size(1) > 1 and _cpu_autocast(query):
        with torch.autocast(query.device.type, enabled=False):
            yield query.float(), keys.float(), values.float()
    else:
        yield query, keys, values


def _attend(scores: Tensor, values: Tensor, pad_mask: Tensor,
            grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
    scores = scores.masked_fill(pad_mask.unsqueeze(1), float("-inf"))  # (B, Tq, S)
    weights = torch.softmax(scores, dim=-1)  # (B, Tq, S)
    if grads is not None:  # one step: values are grads.values
        return grads.context(weights), weights  # (B, Tq=1, 2H), (B, Tq=1, S)
    ctx = weights @ values  # (B, Tq, S) @ (B, S, 2H) -> (B, Tq, 2H)
    return ctx, weights


class BahdanauAttention(nn.Module):
    """Additive attention (Bahdanau, Cho and Bengio, 2015, appendix A.1.2).

    ``score(q, k_s) = v^T tanh(W_q q + W_k k_s)``.

    Args:
        query_size: decoder hidden size ``Hq``.
        key_size: encoder output size (``2H`` for a bidirectional encoder).
        attn_size: size ``A`` of the hidden layer of the scoring network.
    """

    def __init__(self, query_size: int, key_size: int, attn_size: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_size, attn_size, bias=False)
        self.query_proj = nn.Linear(query_size, attn_size, bias=False)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def keys(self, enc_out: Tensor) -> Tensor:
        keys = self.key_proj(enc_out)  # (B, S, 2H) -> (B, S, A)
        return keys.float() if _cpu_low_precision(keys) else keys  # float32 scores: see forward

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor,
                grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
        q = self.query_proj(query)  # (B, Tq, A)
        if _cpu_low_precision(q) and q.size(1) == 1:
            # one step under CPU autocast: the scores in float32, since torch.tanh runs 4.5x
            # slower in bf16 than in float32 there (greedy --bf16: 1.1x faster); the keys are
            # float32 already (cast once per batch by keys()), the context product stays bf16
            with torch.autocast(q.device.type, enabled=False):
                scores = self._scores(q.float(), keys.float(), self.v.weight.float())
            return _attend(scores, values, pad_mask, grads)
        with _score_precision(q, keys, values) as (q, keys, values):
            return _attend(self._scores(q, keys, self.v.weight), values, pad_mask, grads)

    @staticmethod
    def _scores(q: Tensor, keys: Tensor, v: Tensor) -> Tensor:
        """``v^T tanh(q + k_s)``: ``q (B, Tq, A)``, ``keys (B, S, A)``, ``v (1, A)`` ->
        ``(B, Tq, S)``."""
        return F.linear(torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1)), v).squeeze(-1)


class LuongAttention(nn.Module):
    """Multiplicative "general" attention (Luong, Pham and Manning, 2015, section 3.1).

    ``score(q, k_s) = q^T W_a k_s``.

    Args:
        query_size: decoder hidden size ``Hq``.
        key_size: encoder output size (``2H`` for a bidirectional encoder).
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(key_size, query_size, bias=False)

    def keys(self, enc_out: Tensor) -> Tensor:
        return self.key_proj(enc_out)  # (B, S, 2H) -> (B, S, Hq)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor,
                grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
        with _score_precision(query, keys, values) as (query, keys, values):
            scores = query @ keys.transpose(1, 2)  # (B, Tq, Hq) @ (B, Hq, S) -> (B, Tq, S)
            return _attend(scores, values, pad_mask, grads)
