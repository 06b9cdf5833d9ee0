"""Attention over the encoder states: Bahdanau (additive) and Luong (general). Stateless.

Both take the keys precomputed once per batch by :meth:`keys` (so a decoding loop projects
the encoder states once, not once per step) and any number of queries at a time (one per
step when stepping, the whole target at once on the teacher-forced fast path).

    keys = attn.keys(enc_out)                                  # (B, S, 2H) -> (B, S, A)
    ctx, weights = attn(query, keys, enc_out, pad_mask)        # query (B, Tq, Hq)
    # ctx (B, Tq, 2H); weights (B, Tq, S), rows sum to 1, exactly 0 where pad_mask is True

A training loop that steps (input feeding, teacher forcing below 1) passes a
:class:`ValueGrads` too, which sums the gradient of the values over the steps in one product.
"""

from contextlib import contextmanager
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn


@contextmanager
def _score_precision(query: Tensor, keys: Tensor, values: Tensor):
    """Yields ``(query, keys, values)`` for the score and context products: cast to float32,
    with autocast off inside, when ``query (B, Tq, .)`` holds many steps under CPU autocast
    (the teacher-forced fast path without input feeding); else unchanged.
    In bf16 every (target length, source length) pair would be a new matmul shape, and
    oneDNN keeps a primitive (about 2 MB with its backward) for each one it has seen: 1-2 GB
    over a run. One step at a time (decoding, input feeding) only the source length varies."""
    dev = query.device.type
    if dev == "cpu" and query.size(1) > 1 and torch.is_autocast_enabled(dev):
        with torch.autocast(dev, enabled=False):
            yield query.float(), keys.float(), values.float()
    else:
        yield query, keys, values


class ValueGrads:
    """The attention's values over the steps of a training loop, with their gradient summed in
    one product after the loop instead of one per step.

    Under plain autograd every step's context product ``weights_t @ values`` returns its own
    ``(B, S, 2H)`` gradient for the values (a ``K = 1`` outer product) and autograd adds it to
    the others: two passes over a tensor larger than the L2 cache per step, about 9% of a
    decoder step at the Multi30k sizes. Here each step keeps its weights and, in the backward,
    its context's gradient; once every step's backward has run (autograd runs :class:`_Tap`'s
    backward after all the steps that used its output) the values' gradient is
    ``W^T dC``, one batched product, ``W (B, T, S)``, ``dC (B, T, 2H)``, in float32. Under
    autocast the values are cast once here, not at every step.

        grads = ValueGrads(enc.out)     # grads.values: the values every step attends over
        ctx, weights = attention(query_t, keys, grads.values, pad_mask, grads)
    """

    def __init__(self, values: Tensor) -> None:
        dev = values.device.type
        self.dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                      else values.dtype)  # what the context products run in
        self.weights: List[Tensor] = []  # (B, 1, S) per step, float32
        self.d_ctx: List[Optional[Tensor]] = []  # (B, 1, 2H) per step, set by the backward
        self.values = _Tap.apply(values, self)  # (B, S, 2H) in self.dtype

    def context(self, weights: Tensor, values: Tensor) -> Tensor:
        """``weights (B, 1, S) @ values (B, S, 2H)`` for one step; ``values`` is
        :attr:`values`."""
        return _StepContext.apply(weights, values, self)

    def total(self) -> Optional[Tensor]:
        """``sum_t weights_t^T d_ctx_t``, ``(B, S, 2H)`` float32 (None: no step got a gradient)."""
        steps = [t for t, d in enumerate(self.d_ctx) if d is not None]
        if not steps:
            return None
        w = torch.cat([self.weights[t] for t in steps], dim=1)  # (B, T', S)
        dc = torch.cat([self.d_ctx[t].float() for t in steps], dim=1)  # (B, T', 2H)
        return torch.bmm(w.transpose(1, 2), dc)  # (B, S, 2H)


class _Tap(torch.autograd.Function):
    """``values -> values`` in the sink's dtype; the backward returns the sink's total."""

    @staticmethod
    def forward(ctx, values, sink):
        ctx.set_materialize_grads(False)
        ctx.sink, ctx.dtype = sink, values.dtype
        return values.to(sink.dtype) if values.dtype != sink.dtype else values.view_as(values)

    @staticmethod
    def backward(ctx, grad):  # grad: from uses other than the sink's steps, usually None
        total = ctx.sink.total()
        if grad is not None:
            total = grad.float() if total is None else total + grad.float()
        return None if total is None else total.to(ctx.dtype), None


class _StepContext(torch.autograd.Function):
    """``(weights (B, 1, S), values (B, S, 2H), sink) -> weights @ values`` in the sink's dtype,
    with autocast off inside; the backward hands its incoming gradient to the sink and returns
    none for the values."""

    @staticmethod
    def forward(ctx, weights, values, sink):
        ctx.set_materialize_grads(False)
        ctx.sink, ctx.step = sink, len(sink.weights)
        sink.weights.append(weights.detach().float())
        sink.d_ctx.append(None)
        ctx.save_for_backward(values)
        ctx.w_dtype = weights.dtype
        with torch.autocast(values.device.type, enabled=False):
            return torch.bmm(weights.to(values.dtype), values)  # (B, 1, 2H)

    @staticmethod
    def backward(ctx, d_ctx):
        if d_ctx is None:
            return None, None, None
        values, = ctx.saved_tensors
        ctx.sink.d_ctx[ctx.step] = d_ctx
        d_w = torch.bmm(d_ctx.to(values.dtype), values.transpose(1, 2))  # (B, 1, S)
        return d_w.to(ctx.w_dtype), None, None


def _attend(scores: Tensor, values: Tensor, pad_mask: Tensor,
            grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
    scores = scores.masked_fill(pad_mask.unsqueeze(1), float("-inf"))  # (B, Tq, S)
    weights = torch.softmax(scores, dim=-1)  # (B, Tq, S)
    if grads is not None:
        return grads.context(weights, values), weights  # (B, 1, 2H), (B, 1, S)
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
        return self.key_proj(enc_out)  # (B, S, 2H) -> (B, S, A)

    def forward(self, query: Tensor, keys: Tensor, values: Tensor, pad_mask: Tensor,
                grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Tensor]:
        q = self.query_proj(query)  # (B, Tq, A)
        with _score_precision(q, keys, values) as (q, keys, values):
            scores = self.v(torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)  # (B, Tq, S)
            return _attend(scores, values, pad_mask, grads)


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
