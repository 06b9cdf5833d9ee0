"""Attention over the encoder states: Bahdanau (additive) and Luong (general). Stateless.

Both take the keys precomputed once per batch by :meth:`keys` (so a decoding loop projects
the encoder states once, not once per step) and any number of queries at a time (one per
step when stepping, the whole target at once on the teacher-forced fast path).

    keys = attn.keys(enc_out)                                  # (B, S, 2H) -> (B, S, A)
    ctx, weights = attn(query, keys, enc_out, pad_mask)        # query (B, Tq, Hq)
    # ctx (B, Tq, 2H); weights (B, Tq, S), rows sum to 1, exactly 0 where pad_mask is True

These are the equations, in plain torch ops; :mod:`seq2seq.kernels.fast_attention` subclasses
them with the CPU's precision regions for bf16 (``model.kernels: fast``).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_softmax(scores: Tensor, pad_mask: Tensor) -> Tensor:
    """``scores (B, Tq, S)`` -> weights ``(B, Tq, S)``: softmax over the source positions, exactly
    0 where ``pad_mask (B, S)`` is True."""
    scores = scores.masked_fill(pad_mask.unsqueeze(1), float("-inf"))  # (B, Tq, S)
    return torch.softmax(scores, dim=-1)


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
        return self.key_proj(enc_out)  # (B, S, 2H) -> (B, S, A)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor
                ) -> Tuple[Tensor, Tensor]:
        q = self.query_proj(query)  # (B, Tq, A)
        weights = masked_softmax(self._scores(q, keys, self.v.weight), pad_mask)  # (B, Tq, S)
        return weights @ values, weights  # (B, Tq, S) @ (B, S, 2H) -> (B, Tq, 2H)

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

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor
                ) -> Tuple[Tensor, Tensor]:
        scores = query @ keys.transpose(1, 2)  # (B, Tq, Hq) @ (B, Hq, S) -> (B, Tq, S)
        weights = masked_softmax(scores, pad_mask)  # (B, Tq, S)
        return weights @ values, weights  # (B, Tq, S) @ (B, S, 2H) -> (B, Tq, 2H)
