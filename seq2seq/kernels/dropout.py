"""Dropout with its mask drawn by ``torch.rand`` on the CPU.

``nn.Dropout`` draws its mask with ``bernoulli_``, which on the CPU costs three times a
``torch.rand`` of the same size: forward + backward of a (64, 16, 256) dropout took 2.0 ms
against 1.0 ms this way (one thread, Intel Xeon, torch 2.13), about 2% of a training step of
the Multi30k-size models. Same distribution: each element kept with probability ``1 - p`` and
scaled by ``1 / (1 - p)``; off the CPU and in eval mode it is ``nn.Dropout`` itself. The
fast layers use it (``model.kernels: fast``); the plain model, ``nn.Dropout``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def keep_mask(x: Tensor, p: float) -> Tensor:
    """A tensor shaped like ``x`` of ``0`` (probability ``p``) and ``1 / (1 - p)``, in x's dtype."""
    mask = torch.rand(x.shape, device=x.device).ge_(p)  # float32 0/1: u >= p with probability 1 - p
    return mask.to(x.dtype).mul_(1.0 / (1.0 - p))


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``, with the faster mask on the CPU."""
    if training and x.device.type == "cpu" and 0.0 < p < 1.0:
        return x * keep_mask(x, p)
    return F.dropout(x, p, training)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments and state) with the faster mask on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
