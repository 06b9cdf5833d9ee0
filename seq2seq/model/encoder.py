"""Encoder: embedding, recurrent layer (bidirectional by default), and the bridge to the decoder."""

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .rnn import State, length_mask, make_rnn


class Encoded(NamedTuple):
    """What the encoder hands the decoder."""

    out: Tensor  # (B, S, D*H) encoder outputs, zero at padding
    pad_mask: Tensor  # (B, S) True at source padding
    state: State  # the decoder's initial state, (L, B, H_dec) each


class Bridge(nn.Module):
    """Maps the encoder's final states ``(L*D, B, H)`` to the decoder's initial ``(L, B, H_dec)``.

    Per layer, the final states of the D directions are concatenated and projected:
    ``s_0 = tanh(W [h_fwd; h_bwd] + b)`` (the same map for ``h`` and, for LSTM, ``c``). Decoder
    layer ``k`` reads encoder layer ``min(L - 1, max(0, L - L_dec) + k)``: with fewer decoder
    layers, the top ``L_dec`` encoder layers in order; with more, encoder layers ``0..L-1`` in
    order and the top encoder layer for each extra one.
    """

    def __init__(self, enc_hidden: int, directions: int, enc_layers: int, dec_hidden: int,
                 dec_layers: int) -> None:
        super().__init__()
        self.directions, self.enc_layers, self.dec_layers = directions, enc_layers, dec_layers
        self.proj = nn.Linear(directions * enc_hidden, dec_hidden)

    def _map(self, s: Tensor) -> Tensor:
        L, D = self.enc_layers, self.directions
        B, H = s.shape[1], s.shape[2]
        s = s.view(L, D, B, H).permute(0, 2, 1, 3).reshape(L, B, D * H)  # (L, B, D*H)
        idx = [min(L - 1, max(0, L - self.dec_layers) + i) for i in range(self.dec_layers)]
        s = s[idx] if idx != list(range(L)) else s  # (L_dec, B, D*H)
        return torch.tanh(self.proj(s))  # (L_dec, B, H_dec)

    def forward(self, state: State) -> State:
        return state.map(self._map)


class Encoder(nn.Module):
    """Embeds the source, runs the recurrent layer over it (packed by length), bridges the state.

    Args:
        cell, impl: ``lstm``|``gru`` and ``manual``|``fused`` (see :mod:`seq2seq.model.rnn`).
        vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, dropout: the layer.
        dec_hidden_size, dec_layers: the decoder's state shape, for the bridge.
        pad_id: the padding id (its embedding is zero).

    Inputs: ``src (B, S)`` ids, ``src_len (B,)``. Output: :class:`Encoded`.

    The layers are made by ``dropout_layer`` and ``rnn_layer``: the plain reference here;
    :class:`seq2seq.kernels.fast_model.FastEncoder` names faster ones that compute the same.
    """

    kernels = "plain"  # model.kernels
    dropout_layer = nn.Dropout
    rnn_layer = staticmethod(make_rnn)

    def __init__(self, cell: str, impl: str, vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int, bidirectional: bool, dropout: float,
                 dec_hidden_size: int, dec_layers: int, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = self.dropout_layer(dropout)
        self.rnn = self.rnn_layer(cell, impl, embedding_dim, hidden_size, num_layers,
                                  bidirectional, dropout)
        D = 2 if bidirectional else 1
        self.out_size = D * hidden_size
        self.bridge = Bridge(hidden_size, D, num_layers, dec_hidden_size, dec_layers)

    def forward(self, src: Tensor, src_len: Tensor) -> Encoded:
        x = self.dropout(self.embedding(src))  # (B, S, E)
        out, state = self.rnn(x, src_len, None)  # (B, S, D*H), State (L*D, B, H)
        pad_mask = ~length_mask(src_len.to(src.device), src.size(1))  # (B, S)
        return Encoded(self.dropout(out), pad_mask, self.bridge(state))
