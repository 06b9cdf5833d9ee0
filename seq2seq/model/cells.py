"""Recurrent cells written from the gate equations.

The cells take the input projection ``gi = x @ W_ih^T + b_ih`` already computed (the layer
computes it for all time steps in one matmul before its loop), so each call does only the
recurrent matmul ``h @ W_hh^T + b_hh`` and the gate arithmetic. Gate order is that of
``nn.LSTM`` (i, f, g, o) and ``nn.GRU`` (r, z, n), so weights are interchangeable.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def lstm_cell(gi: Tensor, h: Tensor, c: Optional[Tensor], weight_hh: Tensor,
              bias_hh: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
    r"""One LSTM step.

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    Args:
        gi: ``(B, 4H)`` input projection ``W_i* x_t + b_i*`` of this step.
        h, c: ``(B, H)`` previous hidden and cell state.
        weight_hh: ``(4H, H)``; bias_hh: ``(4H,)``.

    Returns:
        ``(h_t, c_t)``, each ``(B, H)``.
    """
    gates = gi + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_cell(gi: Tensor, h: Tensor, c: Optional[Tensor], weight_hh: Tensor,
             bias_hh: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
    r"""One GRU step (``c`` is unused and returned as None).

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    Args:
        gi: ``(B, 3H)`` input projection ``W_i* x_t + b_i*`` of this step.
        h: ``(B, H)`` previous hidden state.
        weight_hh: ``(3H, H)``; bias_hh: ``(3H,)``.

    Returns:
        ``(h_t, None)`` with ``h_t`` of shape ``(B, H)``.
    """
    gh = F.linear(h, weight_hh, bias_hh)  # (B, 3H)
    i_r, i_z, i_n = gi.chunk(3, dim=1)  # 3 x (B, H)
    h_r, h_z, h_n = gh.chunk(3, dim=1)  # 3 x (B, H)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n), None
