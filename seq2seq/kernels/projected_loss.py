"""The output projection and the cross-entropy in one pass, block by block, with the gradients.

What training runs on the CPU with ``model.kernels: fast``
(:func:`seq2seq.training.loss.projected_losses` chooses): the ``(N, V)`` logits of the
non-padding target positions are never kept whole. The plain path (``F.linear`` then
:func:`seq2seq.training.loss.training_losses`) is the reference it is tested against
(tests/test_fused_loss.py: the same losses and gradients to float32 rounding, and to float64
rounding for a float64 model).
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: rows of logits computed at a time by :func:`projected_cross_entropy`: a (256, 8000) float32
#: block (8 MB) is reused while it is hot in the cache, instead of a (B*T, V) one written and
#: read back four times (logits, log-softmax, its gradient, the matmuls)
CHUNK = 256
#: under autocast a block's rows are padded with zeros to a multiple of this: oneDNN keeps a
#: primitive for every matmul shape it runs in bf16, and the last block of each batch would
#: otherwise bring a new row count (up to 255 of them, 3 products each: about 1.1 GB for V 8000)
LOW_PRECISION_ROWS = 64


class _ProjectedCrossEntropy(torch.autograd.Function):
    """``(x (N, O), weight (V, O), bias (V,) or None, target (N,), smoothing, grads) ->
    (objective, nll)``, both summed over the N rows; ``grads``: compute the gradients.

    The logits ``x @ W^T + b`` exist one block of :data:`CHUNK` rows at a time: per block the
    log-sum-exp, both losses and the gradient of the objective with respect to the logits,
    ``softmax - (1 - s) onehot - s / V``, which goes straight into ``dx``, ``dW`` and ``db``
    (all computed here, in the forward; the backward returns them scaled by the incoming
    gradient, out of place, so that a retained graph can run its backward again).
    Under autocast the three matmuls run in its dtype (bf16: AMX/AVX512-BF16), the softmax in
    float32, and a block shorter than :data:`CHUNK` is padded with zero rows to a multiple of
    :data:`LOW_PRECISION_ROWS` (zero rows add nothing to ``dW``, and their logits are dropped).
    A float64 model stays float64 throughout (autocast leaves float64 alone, and so does this).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, target, smoothing, grads):
        dev = x.device.type
        dtype = (torch.get_autocast_dtype(dev)  # the matmuls' dtype
                 if torch.is_autocast_enabled(dev) and x.dtype != torch.float64 else x.dtype)
        # the softmax's and the sums' dtype: float64 for float64, else float32
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        low = dtype != acc  # bf16/fp16 matmuls: padded blocks, cast gradients
        with torch.autocast(dev, enabled=False):
            xc, wc = x.to(dtype), weight.to(dtype)  # (N, O), (V, O)
            N, V = x.size(0), weight.size(0)
            objective = x.new_zeros((), dtype=acc)
            nll = x.new_zeros((), dtype=acc)
            if grads:
                dx = torch.empty(N, x.size(1), dtype=acc, device=x.device)
                dw = torch.zeros(V, x.size(1), dtype=acc, device=x.device)
                db = torch.zeros(V, dtype=acc, device=x.device)
            # one logits block, reused: writing each block's logits to a fresh (CHUNK, V) tensor
            # ran that product at 60% of the speed of the other two (118 against 190-198 GFLOP/s)
            z_buf = torch.empty(min(N, CHUNK), V, dtype=acc, device=x.device)
            for i in range(0, N, CHUNK):
                rows = slice(i, min(N, i + CHUNK))
                x_r = xc[rows]  # (n, O)
                n = x_r.size(0)
                if low:  # (m, O), m >= n: a few shapes for oneDNN
                    x_r = _pad_rows(x_r, -(-n // LOW_PRECISION_ROWS) * LOW_PRECISION_ROWS)
                if not low:  # (n, V) logits (addmm's bias copy is slower)
                    z = torch.mm(x_r, wc.t(), out=z_buf[:n])
                else:
                    z = z_buf[:n].copy_(torch.mm(x_r, wc.t())[:n])
                if bias is not None:
                    z += bias
                tgt = target[rows].unsqueeze(1)  # (n, 1)
                z_tgt = z.gather(1, tgt).squeeze(1)  # (n,)
                z_mean = z.mean(1) if smoothing else None  # (n,)
                z_max = z.amax(1, keepdim=True)  # (n, 1)
                e = z.sub_(z_max).exp_()  # (n, V) exp(z - max), in place of the logits
                total = e.sum(1, keepdim=True)  # (n, 1)
                lse = (z_max + total.log()).squeeze(1)  # (n,) log-sum-exp
                row_nll = lse - z_tgt  # (n,)
                nll += row_nll.sum()
                if smoothing:  # cross-entropy against the uniform distribution: lse - mean z
                    objective += ((1 - smoothing) * row_nll + smoothing * (lse - z_mean)).sum()
                if not grads:
                    continue
                g = e.div_(total)  # (n, V) softmax
                # the gradient of the objective w.r.t. the logits: softmax - (1 - s) onehot - s/V
                g.scatter_add_(1, tgt, g.new_full(tgt.shape, smoothing - 1))
                if smoothing:
                    g -= smoothing / V
                if not low:
                    dx[rows] = torch.mm(g, wc)  # (n, O)
                    dw.addmm_(g.t(), x_r)  # (V, O)
                else:
                    gc = _pad_rows(g.to(dtype), x_r.size(0))  # (m, V), zero beyond n
                    dx[rows] = torch.mm(gc, wc)[:n]  # (n, O)
                    dw += torch.mm(gc.t(), x_r).to(acc)
                db += g.sum(0)
            if not smoothing:
                objective = nll.clone()
        if grads:
            ctx.save_for_backward(dx.to(x.dtype), dw.to(weight.dtype),
                                  None if bias is None else db.to(bias.dtype))
        ctx.mark_non_differentiable(nll)
        return objective, nll

    @staticmethod
    @once_differentiable
    def backward(ctx, d_objective, d_nll):
        dx, dw, db = ctx.saved_tensors  # out of place: a retained graph may call this again
        return dx * d_objective, dw * d_objective, \
            None if db is None else db * d_objective, None, None, None


def _pad_rows(t: Tensor, m: int) -> Tensor:
    """``t (n, K)`` with zero rows appended to ``(m, K)`` (``t`` itself when ``m == n``)."""
    return t if t.size(0) == m else torch.cat([t, t.new_zeros(m - t.size(0), t.size(1))])


def projected_cross_entropy(x: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor,
                            label_smoothing: float = 0.0) -> Tuple[Tensor, Tensor]:
    """``(objective, nll)`` of the logits ``x @ weight^T + bias``, summed over the rows, without
    keeping the logits: ``x (N, O)``, ``weight (V, O)``, ``bias (V,)`` or None, ``target (N,)``.
    ``objective`` is the label-smoothed cross-entropy (differentiable), ``nll`` the plain one
    (no gradient). The gradients are computed with the losses when autograd will need them."""
    grads = torch.is_grad_enabled() and any(  # (a Function's needs_input_grad ignores no_grad)
        t is not None and t.requires_grad for t in (x, weight, bias))
    return _ProjectedCrossEntropy.apply(x, weight, bias, target, float(label_smoothing), grads)
