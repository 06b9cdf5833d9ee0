"""Decoder: embedding, recurrent layer, attention, optional input feeding, output projection.

Each step (Luong, Pham and Manning, 2015, section 3; the same wiring for both scores)::

    x_t   = [emb(y_{t-1}); o_{t-1}]         # o_{t-1} only with input feeding
    h_t   = RNN(x_t, s_{t-1})               # (B, H)
    c_t   = attention(h_t, enc_out)         # (B, 2H_enc), absent with attention "none"
    o_t   = tanh(W_c [h_t; c_t])            # (B, O): the attentional vector
    p_t   = softmax(W_out o_t)              # (B, V)

``O`` is the embedding size when the output projection is tied to the target embedding,
else the hidden size.
"""

from typing import Callable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.kernels.cpu_kernels import argmax, prepacked_linear
from seq2seq.kernels.dropout import Dropout
from seq2seq.kernels.value_grads import ValueGrads
from seq2seq.training.teacher_forcing import gold_mask

from .attention import BahdanauAttention, LuongAttention
from .encoder import Encoded
from .rnn import State, make_rnn

#: False: the attention's values get their gradient at every training step, as plain autograd
#: gives it (the reference :class:`~seq2seq.kernels.value_grads.ValueGrads` is tested against)
DEFER_VALUE_GRADS = True


class DecoderState(NamedTuple):
    """Everything a decoding loop carries from one step to the next."""

    rnn: State  # (L, B, H) each
    att: Optional[Tensor]  # (B, O) previous attentional vector (input feeding), else None
    keys: Optional[Tensor]  # (B, S, A) attention keys, projected once per batch

    def select(self, idx: Tensor) -> "DecoderState":
        """Reorder/repeat along the batch: row ``i`` becomes row ``idx[i]`` (beam search)."""
        pick = lambda t: None if t is None else t.index_select(0, idx)
        return DecoderState(self.rnn.map(lambda t: t.index_select(1, idx)), pick(self.att),
                            pick(self.keys))


class Decoder(nn.Module):
    """An attentional RNN decoder with scheduled teacher forcing.

    Args:
        cell, impl: ``lstm``|``gru`` and ``manual``|``fused``.
        vocab_size, embedding_dim, hidden_size, num_layers, dropout: as usual.
        enc_size: size of the encoder outputs (``2H`` when bidirectional).
        attention: ``"none"``, ``"bahdanau"`` or ``"luong"``.
        input_feeding: feed ``o_{t-1}`` to the recurrent layer with the embedding.
        tie_embeddings: the output projection reuses the target embedding matrix.
        pad_id: the padding id.
        manual_backward: ``handwritten``|``autograd``, for ``impl="manual"`` (see
            :class:`seq2seq.model.rnn.ManualRNN`).

    Teacher forcing: :meth:`forward` takes ``tf_ratio``, the probability of feeding the gold
    previous token. By default (``scope="token"``) the coin is flipped independently per token
    per example (as in Bengio et al., 2015); ``"sequence"`` flips one per example,
    ``"batch"`` one per step for the whole batch. When it says no, the decoder feeds its own
    previous prediction, the argmax of its previous output (``feed="argmax"``) or a sample
    from its softmax at ``temperature`` (``feed="sample"``), with no gradient through the
    choice. The first input is always the gold BOS. With
    ``tf_ratio == 1`` and no input feeding the recurrent layer runs over the whole target in
    one call (fast path); otherwise it steps.
    """

    def __init__(self, cell: str, impl: str, vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int, dropout: float, enc_size: int,
                 attention: str, input_feeding: bool, tie_embeddings: bool, pad_id: int,
                 manual_backward: str = "handwritten") -> None:
        super().__init__()
        self.input_feeding = input_feeding
        self.out_size = embedding_dim if tie_embeddings else hidden_size  # O
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = Dropout(dropout)
        rnn_in = embedding_dim + (self.out_size if input_feeding else 0)
        self.rnn = make_rnn(cell, impl, rnn_in, hidden_size, num_layers, False, dropout,
                            manual_backward)
        if attention == "bahdanau":
            self.attention = BahdanauAttention(hidden_size, enc_size, hidden_size)
        elif attention == "luong":
            self.attention = LuongAttention(hidden_size, enc_size)
        elif attention == "none":
            self.attention = None
        else:
            raise ValueError(f"attention must be none, bahdanau or luong, got {attention!r}")
        combine_in = hidden_size + (enc_size if self.attention is not None else 0)
        self.combine = nn.Linear(combine_in, self.out_size, bias=False)  # W_c
        self.out = nn.Linear(self.out_size, vocab_size)  # W_out
        if tie_embeddings:
            self.out.weight = self.embedding.weight

    # -- pieces -------------------------------------------------------------------------

    def start(self, enc: Encoded) -> DecoderState:
        """The state before the first step: bridged encoder state, zero attentional vector."""
        B = enc.out.size(0)
        att = enc.out.new_zeros(B, self.out_size) if self.input_feeding else None
        keys = self.attention.keys(enc.out) if self.attention is not None else None
        return DecoderState(enc.state, att, keys)

    def attend(self, h: Tensor, enc: Encoded, keys: Optional[Tensor],
               grads: Optional[ValueGrads] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """``h (B, T, H)`` -> attentional vectors ``o (B, T, O)`` and weights ``(B, T, S)``.
        ``grads``: the training loop's :class:`~seq2seq.kernels.value_grads.ValueGrads` (its values are
        attended over instead of ``enc.out``)."""
        if self.attention is None:
            return torch.tanh(self.combine(h)), None
        values = enc.out if grads is None else grads.values  # (B, S, 2H)
        ctx, weights = self.attention(h, keys, values, enc.pad_mask, grads)  # (B, T, 2H), (B, T, S)
        o = torch.tanh(self.combine(torch.cat([h, ctx], dim=-1)))  # (B, T, H + 2H) -> (B, T, O)
        return o, weights

    def project(self, o: Tensor) -> Tensor:
        """Attentional vectors ``(..., O)`` -> logits ``(..., V)``."""
        return self.out(self.dropout(o))

    def projector(self, batch: int) -> Callable[[Tensor], Tensor]:
        """:meth:`project` for a decoding loop in eval mode (``batch`` rows a step): on a
        float32 CPU model the output weight is prepacked for oneDNN once, not at every step
        (1.2-1.4x faster for the largest matmul of decoding; same numbers to rounding); the
        same for a bf16 model under autocast (``--bf16``: 1.6x, the same numbers)."""
        w = self.out.weight
        dev = w.device.type
        amp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        if (self.training or torch.is_grad_enabled() and w.requires_grad
                or amp not in (None, w.dtype)):  # autocast over float32 weights
            return self.project
        return prepacked_linear(w, self.out.bias, max(1, batch)) or self.project

    def step(self, y_prev: Tensor, state: DecoderState, enc: Encoded,
             project: Optional[Callable[[Tensor], Tensor]] = None
             ) -> Tuple[Tensor, DecoderState, Optional[Tensor]]:
        """One step from token ids ``y_prev (B,)``: logits ``(B, V)``, new state, weights
        ``(B, S)``. ``project``: a :meth:`projector` to use instead of :meth:`project`."""
        o, state, weights = self._step(self.dropout(self.embedding(y_prev)), state, enc)
        return (project or self.project)(o), state, weights

    def _step(self, emb_t: Tensor, state: DecoderState, enc: Encoded,
              grads: Optional[ValueGrads] = None):
        x = emb_t if state.att is None else torch.cat([emb_t, state.att], dim=-1)  # (B, E[+O])
        h, rnn_state = self.rnn.step(x, state.rnn)  # (B, H)
        o, weights = self.attend(h.unsqueeze(1), enc, state.keys, grads)  # (B, 1, O), (B, 1, S)
        o = o.squeeze(1)  # (B, O)
        att = o if self.input_feeding else None
        return o, DecoderState(rnn_state, att, state.keys), (
            None if weights is None else weights.squeeze(1))

    # -- training -----------------------------------------------------------------------

    def forward(self, enc: Encoded, tgt_in: Tensor, tf_ratio: float = 1.0,
                feed: str = "argmax", scope: str = "token", temperature: float = 1.0) -> Tensor:
        """Logits ``(B, T, V)`` for ``tgt_in (B, T)`` (BOS followed by the target, padded): the
        output projection of :meth:`features`, which takes the same arguments."""
        return self.out(self.features(enc, tgt_in, tf_ratio, feed, scope, temperature))

    def features(self, enc: Encoded, tgt_in: Tensor, tf_ratio: float = 1.0,
                 feed: str = "argmax", scope: str = "token", temperature: float = 1.0) -> Tensor:
        """What the output projection takes, ``dropout(o) (B, T, O)``, for ``tgt_in (B, T)``.

        ``tf_ratio``, ``scope``: which previous tokens are gold (see
        :func:`seq2seq.training.teacher_forcing.gold_mask`); ``feed``, ``temperature``: what is fed
        otherwise, the argmax of the previous logits or a sample from
        ``softmax(logits / temperature)`` (``temperature`` 0: the argmax). Those logits are
        computed without a gradient; the loss projects all steps at once
        (:func:`seq2seq.training.loss.projected_losses`).
        """
        state = self.start(enc)
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        if tf_ratio >= 1.0 and not self.input_feeding:  # fast path: one call over the target
            h, _ = self.rnn(emb, None, state.rnn)  # (B, T, H)
            return self.dropout(self.attend(h, enc, state.keys)[0])  # (B, T, O)
        B, T = tgt_in.shape
        gold = gold_mask(B, T, tf_ratio, scope, tgt_in.device) if tf_ratio < 1.0 else None  # (B, T)
        # the values' gradient summed once after the loop, not per step (see ValueGrads)
        grads = (ValueGrads(enc.out) if DEFER_VALUE_GRADS and self.attention is not None
                 and torch.is_grad_enabled() and enc.out.requires_grad else None)
        outs: List[Tensor] = []  # (B, O) per step; dropped out at once when nothing is fed back
        # unbind, not emb[:, t]: the backward of T slices would zero-fill and add T full-size
        # (B, T, E) gradients; unbind's is one stack
        for t, x_t in enumerate(emb.unbind(1)):  # x_t (B, E)
            if t > 0 and tf_ratio < 1.0:
                with torch.no_grad():
                    logits = self.out(outs[-1].detach())  # (B, V)
                    if feed == "sample" and temperature > 0:
                        probs = F.softmax(logits.float() / temperature, -1)  # (B, V)
                        pred = torch.multinomial(probs, 1).squeeze(1)
                    else:
                        pred = argmax(logits)  # (B,)
                x_t = torch.where(gold[:, t:t + 1], x_t,
                                  self.dropout(self.embedding(pred)))  # (B, E)
            o, state, _ = self._step(x_t, state, enc, grads)
            outs.append(self.dropout(o) if tf_ratio < 1.0 else o)
        out = torch.stack(outs, dim=1)  # (B, T, O)
        return out if tf_ratio < 1.0 else self.dropout(out)
