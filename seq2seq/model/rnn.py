"""One recurrent-layer interface, two implementations.

``ManualRNN`` steps the cells of :mod:`seq2seq.model.cells` in a Python loop; ``FusedLSTM`` and
``FusedGRU`` run ``nn.LSTM`` / ``nn.GRU``. Both register the same parameters as ``nn.LSTM`` / ``nn.GRU``
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

These layers are the readable reference, in plain torch ops. :mod:`seq2seq.kernels.fast_rnn`
subclasses them with the CPU speed paths (``model.kernels: fast``); tests compare the two.
"""

from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

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


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool, True at valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


class ManualRNN(nn.RNNBase):
    """LSTM or GRU layers stepped in a Python loop over :mod:`seq2seq.model.cells`.

    Args:
        cell: ``"lstm"`` or ``"gru"``.
        input_size, hidden_size, num_layers, bidirectional, dropout: as in ``nn.LSTM``
            (dropout is applied to the outputs of every layer but the last, in training).

    The input projection ``x @ W_ih^T + b_ih`` of all time steps is one matmul per layer and
    direction before the loop; only ``h @ W_hh^T`` and the gate arithmetic run per step.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0) -> None:
        super().__init__(_check_cell(cell), input_size, hidden_size, num_layers=num_layers,
                         bias=True, batch_first=True,
                         dropout=dropout if num_layers > 1 else 0.0,
                         bidirectional=bidirectional)
        self.cell = cell
        self._cell_fn = lstm_cell if cell == "lstm" else gru_cell

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
        h_n, c_n = [], []
        layer_in = x  # (B, T, I)
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                idx = layer * D + direction
                w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
                gi = F.linear(layer_in, w_ih, b_ih)  # (B, T, G*H), all steps in one matmul
                c = None if state.c is None else state.c[idx]
                out, h, c = self._direction(gi, state.h[idx], c, w_hh, b_hh, valid,
                                            bool(direction))
                outs.append(out)  # (B, T, H)
                h_n.append(h)
                c_n.append(c)
            layer_in = outs[0] if D == 1 else torch.cat(outs, dim=-1)  # (B, T, D*H)
            if valid is not None:
                layer_in = layer_in * valid  # zero at padding, as pad_packed_sequence
            if layer < self.num_layers - 1:
                layer_in = self._between_layers(layer_in)
        h_n = torch.stack(h_n)  # (L*D, B, H)
        return layer_in, State(h_n, None if state.c is None else torch.stack(c_n))

    def _between_layers(self, x: Tensor) -> Tensor:
        """Dropout on a layer's outputs before the next layer (training only)."""
        return F.dropout(x, self.dropout, self.training)

    def _direction(self, gi: Tensor, h: Tensor, c: Optional[Tensor], w_hh: Tensor, b_hh: Tensor,
                   valid: Optional[Tensor], reverse: bool
                   ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """One layer and direction over all steps, cell by cell: ``gi (B, T, G*H)`` (the input
        projection), ``h``, ``c`` ``(B, H)`` (``c`` None for GRU), ``valid (B, T, 1)`` or None;
        returns ``(out (B, T, H), h_n (B, H), c_n (B, H) or None)``."""
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
            if layer < self.num_layers - 1:
                inp = self._between_layers(inp)
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
        return self._with_lengths(x, lengths, hx)

    def _with_lengths(self, x: Tensor, lengths: Tensor, hx) -> Tuple[Tensor, State]:
        """Sequences of different lengths: packed, so that each stops at its own length."""
        T = x.size(1)
        packed = pack_padded_sequence(x, lengths.cpu().long(), batch_first=True,
                                      enforce_sorted=False)
        out, hx = super().forward(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D*H)
        return out, State.from_torch(hx)

    def _between_layers(self, x: Tensor) -> Tensor:
        """Dropout on a layer's outputs before the next layer (training only)."""
        return F.dropout(x, self.dropout, self.training)

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
            if layer < self.num_layers - 1:
                inp = self._between_layers(inp)
        return h_n[-1], State(torch.stack(h_n), torch.stack(c_n) if c_n else None)


class FusedLSTM(_Fused, nn.LSTM):
    """``nn.LSTM`` (batch-first, packed inputs) behind the :class:`ManualRNN` interface."""

    cell = "lstm"


class FusedGRU(_Fused, nn.GRU):
    """``nn.GRU`` (batch-first, packed inputs) behind the :class:`ManualRNN` interface."""

    cell = "gru"


def make_rnn(cell: str, impl: str, input_size: int, hidden_size: int, num_layers: int = 1,
             bidirectional: bool = False, dropout: float = 0.0,
             classes: Optional[Tuple[type, type, type]] = None) -> nn.Module:
    """Build a recurrent layer: ``cell`` is ``lstm``|``gru``, ``impl`` is ``manual``|``fused``.
    ``classes``: ``(manual, fused LSTM, fused GRU)`` to build instead of :class:`ManualRNN`,
    :class:`FusedLSTM`, :class:`FusedGRU` (subclasses with the same parameters)."""
    _check_cell(cell)
    manual, fused_lstm, fused_gru = classes or (ManualRNN, FusedLSTM, FusedGRU)
    dropout = dropout if num_layers > 1 else 0.0
    if impl == "manual":
        return manual(cell, input_size, hidden_size, num_layers, bidirectional, dropout)
    if impl != "fused":
        raise ValueError(f"impl must be 'manual' or 'fused', got {impl!r}")
    fused = fused_lstm if cell == "lstm" else fused_gru
    return fused(input_size, hidden_size, num_layers=num_layers, bias=True, batch_first=True,
                 dropout=dropout, bidirectional=bidirectional)
