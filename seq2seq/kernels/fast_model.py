"""The encoder and decoder of :mod:`seq2seq.model` on the CPU speed paths (``model.kernels: fast``).

:class:`FastEncoder` and :class:`FastDecoder` are the plain classes built from the fast layers
(:mod:`seq2seq.kernels.fast_rnn`, :mod:`seq2seq.kernels.fast_attention`, the dropout of
:mod:`seq2seq.kernels.dropout`): the same parameters, made in the same order from the same
random numbers, so one state dict loads into either. The decoder adds three loop kernels:

- :meth:`FastDecoder.projector`: the output weight prepacked for oneDNN once per decoding loop
  (:mod:`seq2seq.kernels.onednn`), not at every step;
- the argmax fed back under teacher forcing below 1 is :func:`seq2seq.kernels.argmax.argmax`;
- a training loop that steps (input feeding, teacher forcing below 1) sums the attention
  values' gradient once after the loop (:class:`seq2seq.kernels.value_grads.ValueGrads`).

Like every fast path, these run on the CPU only: elsewhere the plain code runs.

:meth:`seq2seq.model.seq2seq.Seq2Seq.from_config` chooses these classes or the plain ones.
"""

from typing import Callable, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from seq2seq.model.decoder import Decoder
from seq2seq.model.encoder import Encoder
from seq2seq.model.rnn import State

from .argmax import argmax as blocked_argmax
from .dropout import Dropout
from .fast_attention import FastBahdanauAttention, FastLuongAttention
from .fast_rnn import FastManualRNN, make_fast_rnn
from .onednn import prepacked_linear
from .value_grads import ValueGrads


def _set_backward(rnn: nn.Module, manual_backward: str) -> None:
    """``model.manual_backward`` (``handwritten`` | ``autograd``) for a manual layer."""
    if manual_backward not in ("handwritten", "autograd"):
        raise ValueError(f"manual_backward must be 'handwritten' or 'autograd', got "
                         f"{manual_backward!r}")
    if isinstance(rnn, FastManualRNN):
        rnn.backward = manual_backward


class FastEncoder(Encoder):
    """:class:`seq2seq.model.encoder.Encoder` on the fast layers.

    Args: those of ``Encoder``, and ``manual_backward``: ``handwritten`` | ``autograd``, how a
    manual layer trains (see :class:`seq2seq.kernels.fast_rnn.FastManualRNN`).
    """

    kernels = "fast"
    dropout_layer = Dropout
    rnn_layer = staticmethod(make_fast_rnn)

    def __init__(self, cell: str, impl: str, vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int, bidirectional: bool, dropout: float,
                 dec_hidden_size: int, dec_layers: int, pad_id: int,
                 manual_backward: str = "handwritten") -> None:
        super().__init__(cell, impl, vocab_size, embedding_dim, hidden_size, num_layers,
                         bidirectional, dropout, dec_hidden_size, dec_layers, pad_id)
        _set_backward(self.rnn, manual_backward)


class _Stepping(NamedTuple):
    """:class:`seq2seq.model.encoder.Encoded` for a training loop that steps, with the
    :class:`ValueGrads` of ``out``: the steps attend over ``grads.values``."""

    out: Tensor  # (B, S, D*H)
    pad_mask: Tensor  # (B, S)
    state: State  # (L, B, H_dec) each
    grads: ValueGrads


class FastDecoder(Decoder):
    """:class:`seq2seq.model.decoder.Decoder` on the fast layers, with the loop kernels of the
    module docstring.

    Args: those of ``Decoder``, and
        manual_backward: ``handwritten`` | ``autograd``, how a manual layer trains.
        prepack: :meth:`projector` prepacks the output weight where oneDNN applies (False: the
            plain :meth:`project`; for comparisons).
        defer_value_grads: a stepping training loop sums the attention values' gradient once
            (False: per step, as plain autograd does; for comparisons).
    """

    kernels = "fast"
    dropout_layer = Dropout
    rnn_layer = staticmethod(make_fast_rnn)
    bahdanau_layer = FastBahdanauAttention
    luong_layer = FastLuongAttention
    argmax = staticmethod(blocked_argmax)

    def __init__(self, cell: str, impl: str, vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int, dropout: float, enc_size: int,
                 attention: str, input_feeding: bool, tie_embeddings: bool, pad_id: int,
                 manual_backward: str = "handwritten", prepack: bool = True,
                 defer_value_grads: bool = True) -> None:
        super().__init__(cell, impl, vocab_size, embedding_dim, hidden_size, num_layers,
                         dropout, enc_size, attention, input_feeding, tie_embeddings, pad_id)
        _set_backward(self.rnn, manual_backward)
        self.prepack, self.defer_value_grads = prepack, defer_value_grads

    def projector(self, batch: int) -> Callable[[Tensor], Tensor]:
        """:meth:`project` for a decoding loop in eval mode (``batch`` rows a step): on a
        float32 CPU model the output weight is prepacked for oneDNN once, not at every step
        (1.2-1.4x faster for the largest matmul of decoding; same numbers to rounding); the
        same for a bf16 model under autocast (``--bf16``: 1.6x, the same numbers). Elsewhere
        (training, autocast over float32 weights, no oneDNN) :meth:`project` itself."""
        w = self.out.weight
        dev = w.device.type
        amp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        if (not self.prepack or self.training or torch.is_grad_enabled() and w.requires_grad
                or amp not in (None, w.dtype)):  # autocast over float32 weights
            return self.project
        return prepacked_linear(w, self.out.bias, max(1, batch)) or self.project

    def features(self, enc, tgt_in: Tensor, tf_ratio: float = 1.0, feed: str = "argmax",
                 scope: str = "token", temperature: float = 1.0) -> Tensor:
        steps = tf_ratio < 1.0 or self.input_feeding
        if (steps and self.defer_value_grads and self.attention is not None
                and enc.out.device.type == "cpu" and torch.is_grad_enabled()
                and enc.out.requires_grad):
            # the values' gradient summed once after the loop, not per step (see ValueGrads)
            enc = _Stepping(*enc, ValueGrads(enc.out))
        return super().features(enc, tgt_in, tf_ratio, feed, scope, temperature)

    def attend(self, h: Tensor, enc, keys: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        if not isinstance(enc, _Stepping):
            return super().attend(h, enc, keys)
        ctx, weights = self.attention(h, keys, enc.grads.values, enc.pad_mask, enc.grads)
        return self.combine_context(h, ctx), weights  # (B, T, O), (B, T, S)
