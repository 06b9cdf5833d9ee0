"""One recurrent-layer interface, two implementations.

``ManualRNN`` steps the cells of :mod:`seq2seq.model.cells` in a Python loop; ``FusedRNN`` runs
``nn.LSTM`` / ``nn.GRU``. Both register the same parameters as ``nn.LSTM`` / ``nn.GRU``
(``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}[_reverse]``, ``bias_ih_l{k}[_reverse]``,
``bias_hh_l{k}[_reverse]``; gate order i,f,g,o and r,z,n) with the same initialisation, so one
state dict loads into either, and into a plain ``nn.LSTM`` / ``nn.GRU``.

Interface (both implementations, batch-first)::

    out, state = rnn(x, lengths=None, state=None)   # x (B, T, I), lengths (B,) -> out (B, T, D*H)
    out_t, state = rnn.step(x_t, state)              # x_t (B, I) -> out_t (B, H); unidirectional

Legend: B batch, T time, I input size, H hidden size, L layers, D = 2 if bidirectional else 1.

``State(h, c)``: ``h`` and ``c`` are ``(L*D, B, H)`` as in ``nn.LSTM`` (layer-major, direction
minor); ``c`` is None for GRU. Traps, as in ``nn.LSTM``: for a bidirectional layer ``state.h[-1]``
is the *backward* direction's final state, which is ``out[:, 0, H:]``, not ``out[:, -1]``.
With ``lengths``, a sequence's state freezes after its last valid step (so final states equal
those of a packed ``nn.LSTM``) and ``out`` is zero at padded positions.
"""

from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.kernels.cpu_kernels import recurrence
from seq2seq.kernels.dropout import dropout as apply_dropout

from .cells import gru_cell, lstm_cell


class State(NamedTuple):
    """Recurrent state: ``h`` (L*D, B, H) and ``c`` (L*D, B, H) for LSTM, None for GRU.

    The one place that knows how LSTM and GRU states differ.
    """

    h: Tensor
    c: Optional[Tensor] = None

    @staticmethod
    def from_torch(hx) -> "State":
        """From what ``nn.LSTM`` (a tuple ``(h, c)``) or ``nn.GRU`` (a tensor ``h``) returns."""
        return State(*hx) if isinstance(hx, tuple) else State(hx, None)

    def to_torch(self):
        """To what ``nn.LSTM`` (``(h, c)``) or ``nn.GRU`` (``h``) takes."""
        return self.h if self.c is None else (self.h, self.c)

    def map(self, fn) -> "State":
        """Apply ``fn`` to ``h`` and (when present) ``c``."""
        return State(fn(self.h), None if self.c is None else fn(self.c))

    @staticmethod
    def zeros(cell: str, size: int, batch: int, hidden: int, like: Tensor) -> "State":
        h = like.new_zeros(size, batch, hidden)
        return State(h, torch.zeros_like(h) if cell == "lstm" else None)


def _check_cell(cell: str) -> str:
    if cell not in ("lstm", "gru"):
        raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
    return cell.upper()


def _check_backward(backward: str) -> str:
    if backward not in ("handwritten", "autograd"):
        raise ValueError(f"backward must be 'handwritten' or 'autograd', got {backward!r}")
    return backward


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool, True at valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


class ManualRNN(nn.RNNBase):
    """LSTM or GRU layers stepped in a Python loop over :mod:`seq2seq.model.cells`.

    Args:
        cell: ``"lstm"`` or ``"gru"``.
        input_size, hidden_size, num_layers, bidirectional, dropout: as in ``nn.LSTM``
            (dropout is applied to the outputs of every layer but the last, in training).
        backward: ``"handwritten"`` (``model.manual_backward``'s default): when autograd is
            recording and autocast is off, run each layer and direction as
            :func:`seq2seq.kernels.cpu_kernels.recurrence`, the same function with a hand-written
            backward, 1.1-1.5x faster forward+backward (``scripts/bench.py layer``); otherwise
            (inference, autocast) the loop over the cells. ``"autograd"``: always the loop over
            the cells under plain autograd, the reference the hand-written one is tested
            against. Also an attribute (``rnn.backward = "autograd"``).

    The input projection ``x @ W_ih^T + b_ih`` of all time steps is one matmul per layer and
    direction before the loop; only ``h @ W_hh^T`` and the gate arithmetic run per step.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0,
                 backward: str = "handwritten") -> None:
        super().__init__(_check_cell(cell), input_size, hidden_size, num_layers=num_layers,
                         bias=True, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0,
                         bidirectional=bidirectional)
        self.cell = cell
        self._cell_fn = lstm_cell if cell == "lstm" else gru_cell
        self.backward = _check_backward(backward)

    def _weights(self, layer: int, direction: int) -> List[Tensor]:
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        return [getattr(self, f"{n}_{suffix}")
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None,
                state: Optional[State] = None) -> Tuple[Tensor, State]:
        B, T, _ = x.shape
        D = 2 if self.bidirectional else 1
        if state is None:
            state = State.zeros(self.cell, self.num_layers * D, B, self.hidden_size, x)
        if lengths is not None and int(lengths.min()) == T:
            lengths = None  # no padding: no state to freeze
        valid = None if lengths is None else length_mask(lengths.to(x.device), T).unsqueeze(-1)  # (B, T, 1)
        # the hand-written backward pays off only when there is a backward; it runs in the
        # inputs' dtype, so under autocast the plain loop (whose ops autocast) runs instead
        fast = (self.backward == "handwritten" and torch.is_grad_enabled()
                and not torch.is_autocast_enabled(x.device.type)
                and any(p.requires_grad for p in self.parameters()))
        h_n, c_n = [], []
        layer_in = x  # (B, T, I)
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                idx = layer * D + direction
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
                gi = F.linear(layer_in, w_ih, b_ih)  # (B, T, G*H), all steps in one matmul
                c = None if state.c is None else state.c[idx]
                run = recurrence if fast else self._loop
                out, h, c = run(gi, state.h[idx], c, w_hh, b_hh, valid, bool(direction))
                outs.append(out)  # (B, T, H)
                h_n.append(h)
                c_n.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (B, T, D*H)
            if valid is not None:
                layer_in = layer_in * valid  # zero at padding, as pad_packed_sequence
            if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                layer_in = apply_dropout(layer_in, self.dropout)
        h_n = torch.stack(h_n)  # (L*D, B, H)
        return layer_in, State(h_n, None if state.c is None else torch.stack(c_n))

    def _loop(self, gi: Tensor, h: Tensor, c: Optional[Tensor], w_hh: Tensor, b_hh: Tensor,
              valid: Optional[Tensor], reverse: bool) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """One layer and direction, cell by cell under plain autograd: the reference for
        :func:`seq2seq.kernels.cpu_kernels.recurrence`, which takes the same arguments."""
        T = gi.size(1)
        out: List[Optional[Tensor]] = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h_t, c_t = self._cell_fn(gi[:, t], h, c, w_hh, b_hh)
            if valid is None:
                h, c = h_t, c_t
            else:  # freeze the state of sequences that have ended (or not yet started)
                m = valid[:, t]  # (B, 1)
                h = torch.where(m, h_t, h)
                c = None if c is None else torch.where(m, c_t, c)
            out[t] = h_t
        return torch.stack(out, dim=1), h, c  # (B, T, H), (B, H), (B, H) or None

    def step(self, x_t: Tensor, state: State) -> Tuple[Tensor, State]:
        """One time step of a unidirectional layer: ``x_t (B, I)`` -> ``(out_t (B, H), State)``."""
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer")
        h_n, c_n = [], []
        inp = x_t  # (B, I)
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer, 0)
            c = None if state.c is None else state.c[layer]
            h, c = self._cell_fn(F.linear(inp, w_ih, b_ih), state.h[layer], c, w_hh, b_hh)
            h_n.append(h)
            c_n.append(c)
            inp = h  # (B, H)
            if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                inp = apply_dropout(inp, self.dropout)
        return h_n[-1], State(torch.stack(h_n), None if state.c is None else torch.stack(c_n))


class _Fused:
    """The packed, batch-first ``forward``/``step`` interface on top of ``nn.LSTM``/``nn.GRU``."""

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None,
                state: Optional[State] = None) -> Tuple[Tensor, State]:
        hx = None if state is None else state.to_torch()
        if lengths is not None and int(lengths.min()) == x.size(1):
            lengths = None  # no padding (common in length-bucketed batches): packing is not needed
        if lengths is None:  # every sequence full length: the unpacked (oneDNN) path
            out, hx = super().forward(x, hx)
            return out, State.from_torch(hx)
        if self.mode == "GRU" and x.device.type == "cpu" and not torch.onnx.is_in_onnx_export():
            return self._unpacked_gru(x, lengths, hx)
        T = x.size(1)
        packed = pack_padded_sequence(x, lengths.cpu().long(), batch_first=True,
                                      enforce_sorted=False)
        out, hx = super().forward(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D*H)
        return out, State.from_torch(hx)

    def _unpacked_gru(self, x: Tensor, lengths: Tensor, h0: Optional[Tensor]
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
            if layer < L - 1 and self.dropout > 0 and self.training:
                layer_in = apply_dropout(layer_in, self.dropout)
        return layer_in, State(torch.stack(h_n))  # (L*D, B, H)

    def step(self, x_t: Tensor, state: State) -> Tuple[Tensor, State]:
        """One time step of a unidirectional layer: ``x_t (B, I)`` -> ``(out_t (B, H), State)``.

        Runs ``torch.lstm_cell`` / ``torch.gru_cell`` per layer, the fused cells of
        ``nn.LSTMCell`` / ``nn.GRUCell``, with ``nn.LSTM``'s dropout between layers: a one-step
        call of the whole module costs more than the step (on the CPU ``nn.LSTM`` sets up a
        oneDNN primitive per call: 1.7x slower forward + backward over 16 steps, 1.1-1.4x for
        ``nn.GRU``). The ONNX export, which has no ``gru_cell``, traces the module call."""
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer")
        if torch.onnx.is_in_onnx_export():
            out, hx = super().forward(x_t.unsqueeze(1), state.to_torch())  # (B, 1, H)
            return out.squeeze(1), State.from_torch(hx)
        h_n, c_n = [], []
        inp = x_t  # (B, I)
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._flat_weights[4 * layer:4 * layer + 4]
            if state.c is None:
                h = torch.gru_cell(inp, state.h[layer], w_ih, w_hh, b_ih, b_hh)  # (B, H)
            else:
                h, c = torch.lstm_cell(inp, (state.h[layer], state.c[layer]), w_ih, w_hh,
                                       b_ih, b_hh)
                c_n.append(c)
            h_n.append(h)
            inp = h
            if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                inp = apply_dropout(inp, self.dropout)
        return h_n[-1], State(torch.stack(h_n), torch.stack(c_n) if c_n else None)


class FusedLSTM(_Fused, nn.LSTM):
    """``nn.LSTM`` (batch-first, packed inputs) behind the :class:`ManualRNN` interface."""

    cell = "lstm"


class FusedGRU(_Fused, nn.GRU):
    """``nn.GRU`` (batch-first, packed inputs) behind the :class:`ManualRNN` interface."""

    cell = "gru"


def make_rnn(cell: str, impl: str, input_size: int, hidden_size: int, num_layers: int = 1,
             bidirectional: bool = False, dropout: float = 0.0,
             manual_backward: str = "handwritten") -> nn.Module:
    """Build a recurrent layer: ``cell`` is ``lstm``|``gru``, ``impl`` is ``manual``|``fused``;
    ``manual_backward`` is :class:`ManualRNN`'s ``backward`` (ignored by ``fused``)."""
    _check_cell(cell)
    dropout = dropout if num_layers > 1 else 0.0
    if impl == "manual":
        return ManualRNN(cell, input_size, hidden_size, num_layers, bidirectional, dropout,
                         manual_backward)
    if impl != "fused":
        raise ValueError(f"impl must be 'manual' or 'fused', got {impl!r}")
    fused = FusedLSTM if cell == "lstm" else FusedGRU
    return fused(input_size, hidden_size, num_layers=num_layers, bias=True, batch_first=True,
                 dropout=dropout, bidirectional=bidirectional)
