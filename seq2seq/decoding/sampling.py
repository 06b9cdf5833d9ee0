"""Sampling: each output token drawn from the model's distribution (temperature, top-k, top-p).

    keys = sample_keys(seed=1, lines=[0, 1, 2], samples=4)     # (12,): 4 samples per line
    pick = Sampler(keys, temperature=0.8, top_p=0.9)
    greedy(model, src, src_len, pick=pick)                     # src: each line 4 times

Reproducible however the lines are batched: the random number of a row at step ``t`` is a hash
of ``(seed, line number, sample number, t)``, not a draw from a generator shared by the batch,
so a line gets the same samples decoded alone, in any batch, on any device. The token is found
by inverse transform: the first token whose cumulative probability exceeds ``u``; ``--top-k 1``
is therefore greedy search (the argmax, ties to the lowest id as ``torch.argmax``).
"""

from typing import Sequence

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (the "0x45d9f3b" mixer) of ``x``, int64 values in ``[0, 2^32)``;
    every product stays below ``2^63``, so int64 arithmetic is exact on every device."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def sample_keys(seed: int, lines: Sequence[int], samples: int = 1, device="cpu") -> Tensor:
    """One key per row, ``(len(lines) * samples,)``: rows ``i * samples ... + samples - 1``
    are the samples of line ``lines[i]`` (its position in the input)."""
    line = torch.as_tensor(list(lines), dtype=torch.long, device=device)
    line = line.repeat_interleave(samples)  # (R,)
    k = torch.arange(samples, dtype=torch.long, device=device).repeat(len(lines))  # (R,)
    base = mix32(torch.tensor(seed % 2**32, dtype=torch.long, device=device))
    return mix32(mix32(base ^ (line & _M32)) ^ k)  # (R,)


def uniform(keys: Tensor, t: int) -> Tensor:
    """``(R,)`` float64 in ``(0, 1)``: row ``r``'s random number at step ``t``."""
    h = mix32(mix32(keys ^ int(mix32(torch.tensor(t + 1)))))  # (R,)
    return (h.double() + 0.5) / 2.0**32


class Sampler:
    """Picks the next token of each row by sampling; a ``pick`` for :func:`seq2seq.decoding.search.greedy`.

    Args:
        keys ``(R,)``: per row of the search (see :func:`sample_keys`).
        temperature: the logits are divided by it (< 1 sharper, > 1 flatter).
        top_k: draw among the ``k`` most probable tokens only (0: all).
        top_p: draw among the fewest most probable tokens whose probabilities add up to at
            least ``p`` (nucleus sampling, Holtzman et al., 2020; 1.0: all). With ``top_k``
            too, ``p`` applies to the probabilities renormalized over the top ``k``.

    Call: ``scores (b, V)`` (banned tokens at ``-inf``), ``rows (b,)`` (the rows of ``keys``
    still in the batch), step ``t`` -> tokens ``(b,)``.
    """

    def __init__(self, keys: Tensor, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.keys, self.temperature, self.top_k, self.top_p = keys, temperature, top_k, top_p

    def __call__(self, scores: Tensor, rows: Tensor, t: int) -> Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)  # (b, V)
        order = None
        if self.top_k or self.top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True, stable=True)  # (b, V)
            keep = torch.ones_like(probs, dtype=torch.bool)
            if self.top_k:
                keep[:, self.top_k:] = False
                probs = probs * keep
                probs = probs / probs.sum(-1, keepdim=True)  # renormalized over the top k
            if self.top_p < 1.0:  # the (top-k) mass before a token must still be short of p
                keep &= (probs.cumsum(-1) - probs) < self.top_p
            probs = probs * keep
        cdf = probs.double().cumsum(-1)  # (b, V)
        u = uniform(self.keys[rows], t) * cdf[:, -1]  # (b,)
        j = torch.searchsorted(cdf, u.unsqueeze(1), right=True).clamp(max=cdf.size(1) - 1)
        tok = j if order is None else order.gather(1, j)  # (b, 1)
        return tok.squeeze(1)
