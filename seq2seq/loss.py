"""Cross-entropy over target tokens, masked on padding."""

from typing import NamedTuple, Tuple

import torch.nn.functional as F
from torch import Tensor


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
