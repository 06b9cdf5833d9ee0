"""Cross-entropy over target tokens, masked on padding; the output projection and the loss.

The training objective as a module (what the loop calls and DDP wraps):
:class:`seq2seq.training.objective.Objective`.
"""

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.kernels.projected_loss import projected_cross_entropy


def _at_least_float32(t: Tensor) -> Tensor:
    """bf16/fp16 logits in float32 for the softmax; float32 and float64 as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def masked_cross_entropy(logits: Tensor, tgt_out: Tensor, pad_id: int,
                         label_smoothing: float = 0.0) -> Tuple[Tensor, int]:
    """Summed token cross-entropy and the number of non-padding tokens.

    ``logits (B, T, V)``, ``tgt_out (B, T)`` (target followed by EOS, padded with ``pad_id``).
    Positions where ``tgt_out == pad_id`` contribute nothing, whatever the logits hold there.
    Divide the sum by the count for the mean per token.
    """
    loss = F.cross_entropy(_at_least_float32(logits.reshape(-1, logits.size(-1))),  # (B*T, V)
                           tgt_out.reshape(-1), ignore_index=pad_id, reduction="sum",
                           label_smoothing=label_smoothing)
    return loss, int((tgt_out != pad_id).sum())


class TokenLosses(NamedTuple):
    """What one training step's loss is made of, summed over the non-padding target tokens."""

    objective: Tensor  # what is minimized: cross-entropy with label smoothing (differentiable)
    nll: float  # plain cross-entropy, comparable with the validation loss
    n: int  # non-padding target tokens
    risk: float = 0.0  # train.objective mrt: the batch's mean expected cost times n (else 0)


def training_losses(logits: Tensor, tgt_out: Tensor, pad_id: int,
                    label_smoothing: float = 0.0) -> TokenLosses:
    """The objective (label-smoothed cross-entropy, as ``F.cross_entropy`` computes it) and the
    plain cross-entropy of the same logits, from one log-softmax. With ``label_smoothing`` 0
    they are the same number."""
    if not label_smoothing:
        loss, n = masked_cross_entropy(logits, tgt_out, pad_id)
        return TokenLosses(loss, float(loss.detach()), n)
    logp = F.log_softmax(_at_least_float32(logits.reshape(-1, logits.size(-1))), dim=-1)
    tgt = tgt_out.reshape(-1)  # (B*T,)
    mask = tgt != pad_id
    nll = -logp.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1)[mask]  # (N,)
    uniform = -logp.mean(-1)[mask]  # (N,) cross-entropy against the uniform distribution
    objective = ((1 - label_smoothing) * nll + label_smoothing * uniform).sum()
    return TokenLosses(objective, float(nll.detach().sum()), int(mask.sum()))


# -- the output projection and the loss ---------------------------------------------------

def projected_losses(features: Tensor, weight: Tensor, bias: Optional[Tensor],
                     tgt_out: Tensor, pad_id: int, label_smoothing: float = 0.0,
                     fused: Optional[bool] = None) -> TokenLosses:
    """:func:`training_losses` of the logits ``features @ weight^T + bias``.

    ``features (B, T, O)``: the decoder's last layer before the output projection (dropout
    applied); ``weight (V, O)``, ``bias (V,)``; ``tgt_out (B, T)``. Only the non-padding
    positions are projected. ``fused`` (None: on the CPU) runs
    :func:`seq2seq.kernels.projected_loss.projected_cross_entropy`, which computes the logits a
    block of rows at a time and the gradients with them, without keeping the logits; else the
    plain path, ``F.linear`` then :func:`training_losses`, the reference it is tested against
    (same numbers to float32 rounding).
    """
    mask = tgt_out != pad_id  # (B, T)
    x = features[mask]  # (N, O)
    tgt = tgt_out[mask]  # (N,)
    if fused is None:
        fused = features.device.type == "cpu"
    if not fused:
        logits = F.linear(x, weight, bias)  # (N, V)
        return training_losses(logits, tgt, pad_id, label_smoothing)
    objective, nll = projected_cross_entropy(x, weight, bias, tgt, label_smoothing)
    return TokenLosses(objective, float(nll), int(tgt.numel()))
