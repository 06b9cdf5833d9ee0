"""The attention of seq2seq.model.attention with the CPU speed paths (``model.kernels: fast``).

Two things differ from the plain classes, neither the equations:

- Precision regions under CPU autocast (``train.amp: bf16``, ``translate --bf16``). A query of
  many steps (the teacher-forced fast path without input feeding) scores and mixes in float32
  with autocast off: in bf16 every (target length, source length) pair would be a new matmul
  shape, and oneDNN keeps a primitive (about 2 MB with its backward) for each one it has seen,
  1-2 GB over a run; one step at a time only the source length varies. Bahdanau's additive
  scores of one step are computed in float32 too, from float32 keys cast once per batch by
  :meth:`keys`, since ``torch.tanh`` runs 4.5x slower in bf16 than in float32 on the CPU
  (greedy ``--bf16``: 1.1x faster); the context product of one step stays bf16. A float64
  model stays float64 (autocast leaves it alone, and so does this).
- ``grads``: a training loop that steps (input feeding, teacher forcing below 1) attends over
  the values of a :class:`~seq2seq.kernels.value_grads.ValueGrads`, which sums their gradient
  over the steps in one product (:class:`seq2seq.kernels.fast_model.FastDecoder` passes it).
"""

from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from torch import Tensor

from seq2seq.model.attention import BahdanauAttention, LuongAttention, masked_softmax

from .value_grads import ValueGrads


def _cpu_autocast(t: Tensor) -> bool:
    return t.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def _cpu_low_precision(t: Tensor) -> bool:
    """``t`` is bf16 or float16 under CPU autocast (autocast leaves float64 alone)."""
    return _cpu_autocast(t) and t.dtype in (torch.bfloat16, torch.float16)


@contextmanager
def _score_precision(query: Tensor, keys: Tensor, values: Tensor):
    """Yields ``(query, keys, values)`` for the score and context products: cast to float32,
    with autocast off inside, when ``query (B, Tq, .)`` holds many steps under CPU autocast;
    else unchanged (see the module docstring)."""
    if query.size(1) > 1 and _cpu_autocast(query):
        with torch.autocast(query.device.type, enabled=False):
            yield query.float(), keys.float(), values.float()
    else:
        yield query, keys, values


def _attend(scores: Tensor, values: Tensor, pad_mask: Tensor,
            grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
    weights = masked_softmax(scores, pad_mask)  # (B, Tq, S)
    if grads is not None:  # one step: values are grads.values
        return grads.context(weights), weights  # (B, Tq=1, 2H), (B, Tq=1, S)
    return weights @ values, weights  # (B, Tq, S) @ (B, S, 2H) -> (B, Tq, 2H)


class FastBahdanauAttention(BahdanauAttention):
    """:class:`BahdanauAttention` with the precision regions and ``grads`` (module docstring)."""

    def keys(self, enc_out: Tensor) -> Tensor:
        keys = super().keys(enc_out)  # (B, S, A)
        return keys.float() if _cpu_low_precision(keys) else keys  # float32 scores: see forward

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor,
                grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
        q = self.query_proj(query)  # (B, Tq, A)
        if _cpu_low_precision(q) and q.size(1) == 1:  # one step: the scores in float32
            with torch.autocast(q.device.type, enabled=False):
                scores = self._scores(q.float(), keys.float(), self.v.weight.float())
            return _attend(scores, values, pad_mask, grads)
        with _score_precision(q, keys, values) as (q, keys, values):
            return _attend(self._scores(q, keys, self.v.weight), values, pad_mask, grads)


class FastLuongAttention(LuongAttention):
    """:class:`LuongAttention` with the precision regions and ``grads`` (module docstring)."""

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor,
                grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
        with _score_precision(query, keys, values) as (query, keys, values):
            scores = query @ keys.transpose(1, 2)  # (B, Tq, Hq) @ (B, Hq, S) -> (B, Tq, S)
            return _attend(scores, values, pad_mask, grads)
