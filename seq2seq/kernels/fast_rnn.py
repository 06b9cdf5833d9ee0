"""The recurrent layers of seq2seq.model.rnn with the CPU speed paths (``model.kernels: fast``).

Each class computes what its base class computes (tests/test_cpu_kernels.py and test_rnn.py
compare them), faster on the CPU:

- :class:`FastManualRNN` runs each layer and direction as
  :func:`seq2seq.kernels.recurrence.recurrence`, with its hand-written backward, when autograd
  is recording and autocast is off, on the CPU (``model.manual_backward: handwritten``, the
  default): 1.1-1.5x faster forward + backward than the loop over the cells
  (``scripts/bench.py layer``). In inference, under autocast (whose casts the loop's ops get)
  and off the CPU it runs the loop.
- :class:`FastFusedGRU` runs a batch of mixed lengths without packing it (``nn.GRU``'s kernel
  on the padded batch, per layer and direction): 1.3x faster forward + backward on the CPU.
- all of them draw the dropout masks between stacked layers with ``torch.rand``
  (:mod:`seq2seq.kernels.dropout`).

:func:`make_fast_rnn` is :func:`seq2seq.model.rnn.make_rnn` for these classes.
"""

from typing import Optional, Tuple

import torch
from torch import _VF, Tensor, nn

from seq2seq.model.rnn import FusedGRU, FusedLSTM, ManualRNN, State, length_mask, make_rnn

from .dropout import dropout as fast_dropout
from .recurrence import recurrence


class _FastDropout:
    """Dropout between stacked layers with the mask drawn by ``torch.rand``."""

    def _between_layers(self, x: Tensor) -> Tensor:
        if self.dropout > 0 and self.training:
            return fast_dropout(x, self.dropout)
        return x


class FastManualRNN(_FastDropout, ManualRNN):
    """:class:`ManualRNN` training through the hand-written recurrence.

    Args:
        cell, input_size, hidden_size, num_layers, bidirectional, dropout: as ``ManualRNN``.
        backward: ``"handwritten"``: when autograd is recording and autocast is off, on the
            CPU, each layer and direction runs as :func:`seq2seq.kernels.recurrence.recurrence`;
            otherwise the loop over the cells. ``"autograd"``: always the loop over the cells,
            under plain autograd (``model.manual_backward: autograd``).
        prepack: the recurrence's per-step matmuls through oneDNN where
            :func:`seq2seq.kernels.onednn.use_prepack` allows (False: ``torch.addmm``; for
            comparisons).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0,
                 backward: str = "handwritten", prepack: bool = True) -> None:
        super().__init__(cell, input_size, hidden_size, num_layers, bidirectional, dropout)
        if backward not in ("handwritten", "autograd"):
            raise ValueError(f"backward must be 'handwritten' or 'autograd', got {backward!r}")
        self.backward, self.prepack = backward, prepack

    def _direction(self, gi: Tensor, h: Tensor, c: Optional[Tensor], w_hh: Tensor, b_hh: Tensor,
                   valid: Optional[Tensor], reverse: bool
                   ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        # the hand-written backward pays off only when there is a backward; it runs in the
        # inputs' dtype, so under autocast the loop (whose ops autocast) runs instead
        if (self.backward == "handwritten" and gi.device.type == "cpu"
                and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
                and any(p.requires_grad for p in self.parameters())):
            return recurrence(gi, h, c, w_hh, b_hh, valid, reverse,
                              prepack=None if self.prepack else False)
        return super()._direction(gi, h, c, w_hh, b_hh, valid, reverse)


class FastFusedLSTM(_FastDropout, FusedLSTM):
    """:class:`FusedLSTM` with the faster dropout masks between stacked layers (in
    :meth:`step`; ``nn.LSTM``'s own forward draws its own)."""


class FastFusedGRU(_FastDropout, FusedGRU):
    """:class:`FusedGRU` running a batch of mixed lengths unpacked on the CPU."""

    def _with_lengths(self, x: Tensor, lengths: Tensor, hx) -> Tuple[Tensor, State]:
        if x.device.type == "cpu" and not torch.onnx.is_in_onnx_export():
            return self._unpacked(x, lengths, hx)
        return super()._with_lengths(x, lengths, hx)

    def _unpacked(self, x: Tensor, lengths: Tensor, h0: Optional[Tensor]
                  ) -> Tuple[Tensor, State]:
        """What the packed call computes, with ``nn.GRU``'s kernel run per layer and direction
        on the padded batch: the reverse direction reads each sequence reversed within its
        length, so that in both directions the padding comes after the valid steps and changes
        nothing before it; final states are taken at the last valid step. 1.3x faster forward
        + backward than packing on the CPU (whose backward slices the packed data step by
        step). GRU only: an LSTM's final ``c`` is not among its outputs."""
        B, T, _ = x.shape
        H, D, L = self.hidden_size, 2 if self.bidirectional else 1, self.num_layers
        lengths = lengths.to(x.device).long()
        pos = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
        rev = torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)  # (B, T)
        last = (lengths - 1).view(B, 1, 1).expand(B, 1, H)  # (B, 1, H)
        valid = length_mask(lengths, T).unsqueeze(-1)  # (B, T, 1)
        if h0 is None:
            h0 = x.new_zeros(L * D, B, H)
        flip = lambda t: t.gather(1, rev.unsqueeze(-1).expand(-1, -1, t.size(2)))  # (B, T, .)
        weights = self._flat_weights  # per layer and direction: w_ih, w_hh, b_ih, b_hh
        layer_in, h_n = x, []  # (B, T, I)
        for layer in range(L):
            outs = []
            for d in range(D):
                k = layer * D + d
                out, _ = _VF.gru(flip(layer_in) if d else layer_in, h0[k:k + 1],
                                 weights[4 * k:4 * k + 4], True, 1, 0.0, self.training, False,
                                 True)  # (B, T, H)
                h_n.append(out.gather(1, last).squeeze(1))  # (B, H)
                outs.append(flip(out) if d else out)
            layer_in = torch.cat(outs, dim=-1) * valid  # (B, T, D*H), zero at padding
            if layer < L - 1:
                layer_in = self._between_layers(layer_in)
        return layer_in, State(torch.stack(h_n))  # (L*D, B, H)


def make_fast_rnn(cell: str, impl: str, input_size: int, hidden_size: int, num_layers: int = 1,
                  bidirectional: bool = False, dropout: float = 0.0) -> nn.Module:
    """:func:`seq2seq.model.rnn.make_rnn` with the fast classes: the same parameters, made in
    the same order from the same random numbers. ``FastManualRNN``'s ``backward`` is its
    default (an attribute: the fast encoder and decoder set ``model.manual_backward``)."""
    return make_rnn(cell, impl, input_size, hidden_size, num_layers, bidirectional, dropout,
                    classes=(FastManualRNN, FastFusedLSTM, FastFusedGRU))
