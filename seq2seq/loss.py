"""Cross-entropy over target tokens, masked on padding."""

from typing import Tuple

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
