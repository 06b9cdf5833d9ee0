"""Cross-entropy over target tokens, masked on padding."""

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def masked_cross_entropy(logits: Tensor, tgt_out: Tensor, pad_id: int,
                         label_smoothing: float = 0.0) -> Tuple[Tensor, int]:
    """Summed token cross-entropy and the number of non-padding tokens.

    ``logits (B, T, V)``, ``tgt_out (B, T)`` (target followed by EOS, padded with ``pad_id``).
    Positions where ``tgt_out == pad_id`` contribute nothing, whatever the logits hold there.
    Divide the sum by the count for the mean per token.
    """
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),  # (B*T, V)
                           tgt_out.reshape(-1), ignore_index=pad_id, reduction="sum",
                           label_smoothing=label_smoothing)
    return loss, int((tgt_out != pad_id).sum())


class TokenLosses(NamedTuple):
    """What one training step's loss is made of, summed over the non-padding target tokens."""

    objective: Tensor  # what is minimized: cross-entropy with label smoothing (differentiable)
    nll: float  # plain cross-entropy, comparable with the validation loss
    n: int  # non-padding target tokens


def training_losses(logits: Tensor, tgt_out: Tensor, pad_id: int,
                    label_smoothing: float = 0.0) -> TokenLosses:
    """The objective (label-smoothed cross-entropy, as ``F.cross_entropy`` computes it) and the
    plain cross-entropy of the same logits, from one log-softmax. With ``label_smoothing`` 0
    they are the same number."""
    if not label_smoothing:
        loss, n = masked_cross_entropy(logits, tgt_out, pad_id)
        return TokenLosses(loss, float(loss.detach()), n)
    logp = F.log_softmax(logits.reshape(-1, logits.size(-1)).float(), dim=-1)  # (B*T, V)
    tgt = tgt_out.reshape(-1)  # (B*T,)
    mask = tgt != pad_id
    nll = -logp.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1)[mask]  # (N,)
    uniform = -logp.mean(-1)[mask]  # (N,) cross-entropy against the uniform distribution
    objective = ((1 - label_smoothing) * nll + label_smoothing * uniform).sum()
    return TokenLosses(objective, float(nll.detach().sum()), int(mask.sum()))


# -- the output projection and the loss in one pass ------------------------------------------

#: rows of logits computed at a time by :func:`projected_losses`: a (256, 8000) float32 block
#: (8 MB) is reused while it is hot in the cache, instead of a (B*T, V) one written and read
#: back four times (logits, log-softmax, its gradient, the matmuls)
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
    (all computed here, in the forward; the backward scales them by the incoming gradient).
    Under autocast the three matmuls run in its dtype (bf16: AMX/AVX512-BF16), the softmax in
    float32, and a block shorter than :data:`CHUNK` is padded with zero rows to a multiple of
    :data:`LOW_PRECISION_ROWS` (zero rows add nothing to ``dW``, and their logits are dropped).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, target, smoothing, grads):
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        with torch.autocast(dev, enabled=False):
            xc, wc = x.to(dtype), weight.to(dtype)  # (N, O), (V, O)
            N, V = x.size(0), weight.size(0)
            objective = x.new_zeros((), dtype=torch.float32)
            nll = x.new_zeros((), dtype=torch.float32)
            if grads:
                dx = torch.empty(N, x.size(1), dtype=torch.float32, device=x.device)
                dw = torch.zeros(V, x.size(1), dtype=torch.float32, device=x.device)
                db = torch.zeros(V, dtype=torch.float32, device=x.device)
            # one logits block, reused: writing each block's logits to a fresh (CHUNK, V) tensor
            # ran that product at 60% of the speed of the other two (118 against 190-198 GFLOP/s)
            z_buf = torch.empty(min(N, CHUNK), V, dtype=torch.float32, device=x.device)
            for i in range(0, N, CHUNK):
                rows = slice(i, min(N, i + CHUNK))
                x_r = xc[rows]  # (n, O)
                n = x_r.size(0)
                if dtype != torch.float32:  # (m, O), m >= n: a few shapes for oneDNN
                    x_r = _pad_rows(x_r, -(-n // LOW_PRECISION_ROWS) * LOW_PRECISION_ROWS)
                if dtype == torch.float32:  # (n, V) logits (addmm's bias copy is slower)
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
                if dtype == torch.float32:
                    dx[rows] = torch.mm(g, wc)  # (n, O)
                    dw.addmm_(g.t(), x_r)  # (V, O)
                else:
                    gc = _pad_rows(g.to(dtype), x_r.size(0))  # (m, V), zero beyond n
                    dx[rows] = torch.mm(gc, wc)[:n]  # (n, O)
                    dw += torch.mm(gc.t(), x_r).float()
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
        dx, dw, db = ctx.saved_tensors  # called once (once_differentiable): scaled in place
        return dx.mul_(d_objective), dw.mul_(d_objective), \
            None if db is None else db.mul_(d_objective), None, None, None


def _pad_rows(t: Tensor, m: int) -> Tensor:
    """``t (n, K)`` with zero rows appended to ``(m, K)`` (``t`` itself when ``m == n``)."""
    return t if t.size(0) == m else torch.cat([t, t.new_zeros(m - t.size(0), t.size(1))])


def projected_losses(features: Tensor, weight: Tensor, bias: Optional[Tensor],
                     tgt_out: Tensor, pad_id: int, label_smoothing: float = 0.0,
                     fused: Optional[bool] = None) -> TokenLosses:
    """:func:`training_losses` of the logits ``features @ weight^T + bias``, without keeping them.

    ``features (B, T, O)``: the decoder's last layer before the output projection (dropout
    applied); ``weight (V, O)``, ``bias (V,)``; ``tgt_out (B, T)``. Only the non-padding
    positions are projected. ``fused`` (None: on the CPU) runs
    :class:`_ProjectedCrossEntropy`, which computes the logits a block of rows at a time and
    the gradients with them; else the plain path, ``F.linear`` then :func:`training_losses`,
    the reference it is tested against (same numbers to float32 rounding).
    """
    mask = tgt_out != pad_id  # (B, T)
    x = features[mask]  # (N, O)
    tgt = tgt_out[mask]  # (N,)
    if fused is None:
        fused = features.device.type == "cpu"
    if not fused:
        logits = F.linear(x, weight, bias)  # (N, V)
        return training_losses(logits, tgt, pad_id, label_smoothing)
    grads = torch.is_grad_enabled() and any(  # (a Function's needs_input_grad ignores no_grad)
        t is not None and t.requires_grad for t in (x, weight, bias))
    objective, nll = _ProjectedCrossEntropy.apply(x, weight, bias, tgt, float(label_smoothing),
                                                  grads)
    return TokenLosses(objective, float(nll), int(tgt.numel()))
