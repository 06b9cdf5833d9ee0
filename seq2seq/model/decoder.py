"""Decoder: embedding, recurrent layer, attention, optional input feeding, output projection.

Each step (Luong, Pham and Manning, 2015, section 3; the same wiring for both scores)::

    x_t   = [emb(y_{t-1}); o_{t-1}]         # o_{t-1} only with input feeding
    h_t   = RNN(x_t, s_{t-1})               # (B, H)
    c_t   = attention(h_t, enc_out)         # (B, 2H_enc), absent with attention "none"
    o_t   = tanh(W_c [h_t; c_t])            # (B, O): the attentional vector
    p_t   = softmax(W_out o_t)              # (B, V)

``O`` is the embedding size when the output projection is tied to the target embedding,
else the hidden size. This is the readable reference, in plain torch ops;
:class:`seq2seq.kernels.fast_model.FastDecoder` is the same decoder on the CPU speed paths.
"""

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import BahdanauAttention, LuongAttention
from .encoder import Encoded
from .rnn import State, make_rnn


def gold_mask(batch: int, length: int, ratio: float, scope: str = "token", device=None) -> Tensor:
    """Which previous tokens are gold: a ``(B, T)`` bool tensor, True with probability ``ratio``.

    ``scope``: ``token`` flips a coin per target token per example (Bengio et al., 2015);
    ``sequence`` one coin per example for its whole target (the old PyTorch seq2seq tutorial's
    choice, which the paper's footnote reports as much worse); ``batch`` one coin per time step
    shared by every example (bentrevett/pytorch-seq2seq's notebooks).
    """
    if scope == "token":
        return torch.rand(batch, length, device=device) < ratio
    if scope == "sequence":
        return (torch.rand(batch, 1, device=device) < ratio).expand(batch, length)
    if scope == "batch":
        return (torch.rand(1, length, device=device) < ratio).expand(batch, length)
    raise ValueError(f"scope must be token, sequence or batch, got {scope!r}")


def noise_ids(vocab_size: int, excluded: Sequence[Optional[int]], device=None) -> Tensor:
    """The ids ``feed="uniform"`` draws from: ``0 .. vocab_size - 1`` less ``excluded``
    (padding and BOS, never a decoder output), a ``(V - len(excluded),)`` long tensor."""
    keep = torch.ones(vocab_size, dtype=torch.bool, device=device)
    for i in excluded:
        if i is not None:
            keep[i] = False
    return keep.nonzero().squeeze(1)


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

    Teacher forcing: :meth:`forward` takes ``tf_ratio``, the probability of feeding the gold
    previous token. By default (``scope="token"``) the coin is flipped independently per token
    per example (as in Bengio et al., 2015); ``"sequence"`` flips one per example,
    ``"batch"`` one per step for the whole batch. When it says no, the decoder feeds its own
    previous prediction, the argmax of its previous output (``feed="argmax"``) or a sample
    from its softmax at ``temperature`` (``feed="sample"``), with no gradient through the
    choice; ``feed="uniform"`` feeds a uniformly random token instead (any id but padding and
    BOS), the noise control: the same corruption rate, nothing of the model's own errors.
    The first input is always the gold BOS. With
    ``tf_ratio == 1`` and no input feeding the recurrent layer runs over the whole target in
    one call; otherwise it steps.

    The layers are made by ``dropout_layer``, ``rnn_layer``, ``bahdanau_layer`` and
    ``luong_layer``: the plain reference here; :class:`seq2seq.kernels.fast_model.FastDecoder`
    names faster ones that compute the same.
    """

    kernels = "plain"  # model.kernels
    dropout_layer = nn.Dropout
    rnn_layer = staticmethod(make_rnn)
    bahdanau_layer = BahdanauAttention
    luong_layer = LuongAttention

    def __init__(self, cell: str, impl: str, vocab_size: int, embedding_dim: int,
                 hidden_size: int, num_layers: int, dropout: float, enc_size: int,
                 attention: str, input_feeding: bool, tie_embeddings: bool, pad_id: int) -> None:
        super().__init__()
        self.input_feeding = input_feeding
        self.out_size = embedding_dim if tie_embeddings else hidden_size  # O
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = self.dropout_layer(dropout)
        rnn_in = embedding_dim + (self.out_size if input_feeding else 0)
        self.rnn = self.rnn_layer(cell, impl, rnn_in, hidden_size, num_layers, False, dropout)
        if attention == "bahdanau":
            self.attention = self.bahdanau_layer(hidden_size, enc_size, hidden_size)
        elif attention == "luong":
            self.attention = self.luong_layer(hidden_size, enc_size)
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

    def attend(self, h: Tensor, enc: Encoded, keys: Optional[Tensor]
               ) -> Tuple[Tensor, Optional[Tensor]]:
        """``h (B, T, H)`` -> attentional vectors ``o (B, T, O)`` and weights ``(B, T, S)``."""
        if self.attention is None:
            return torch.tanh(self.combine(h)), None
        ctx, weights = self.attention(h, keys, enc.out, enc.pad_mask)  # (B, T, 2H), (B, T, S)
        return self.combine_context(h, ctx), weights

    def combine_context(self, h: Tensor, ctx: Tensor) -> Tensor:
        """``o = tanh(W_c [h; c])``: ``h (B, T, H)``, ``ctx (B, T, 2H)`` -> ``(B, T, O)``."""
        return torch.tanh(self.combine(torch.cat([h, ctx], dim=-1)))  # (B, T, H + 2H) -> (B, T, O)

    def project(self, o: Tensor) -> Tensor:
        """Attentional vectors ``(..., O)`` -> logits ``(..., V)``."""
        return self.out(self.dropout(o))

    def projector(self, batch: int) -> Callable[[Tensor], Tensor]:
        """:meth:`project` for a decoding loop of ``batch`` rows a step: :meth:`project` itself
        here (the fast decoder prepacks the output weight once for the loop)."""
        return self.project

    @staticmethod
    def argmax(logits: Tensor) -> Tensor:
        """The id of the largest logit of each row, ``(B, V) -> (B,)`` (the first of ties)."""
        return logits.argmax(-1)

    def step(self, y_prev: Tensor, state: DecoderState, enc: Encoded,
             project: Optional[Callable[[Tensor], Tensor]] = None
             ) -> Tuple[Tensor, DecoderState, Optional[Tensor]]:
        """One step from token ids ``y_prev (B,)``: logits ``(B, V)``, new state, weights
        ``(B, S)``. ``project``: a :meth:`projector` to use instead of :meth:`project`."""
        o, state, weights = self._step(self.dropout(self.embedding(y_prev)), state, enc)
        return (project or self.project)(o), state, weights

    def _step(self, emb_t: Tensor, state: DecoderState, enc: Encoded):
        x = emb_t if state.att is None else torch.cat([emb_t, state.att], dim=-1)  # (B, E[+O])
        h, rnn_state = self.rnn.step(x, state.rnn)  # (B, H)
        o, weights = self.attend(h.unsqueeze(1), enc, state.keys)  # (B, 1, O), (B, 1, S)
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

    def forced(self, enc: Encoded, x: Tensor, state: Optional[DecoderState] = None) -> Tensor:
        """The teacher-forced pass over given inputs ``x (B, T, E)`` (the embeddings of the
        previous tokens, dropped out): the recurrent layer over the whole target in one call,
        then the attention; ``dropout(o) (B, T, O)``, what :meth:`features` returns at
        ``tf_ratio`` 1. ``state``: :meth:`start`'s, where the caller has it. Without input
        feeding only (``o_{t-1}`` needs the steps). Two-pass sampling
        (:mod:`seq2seq.training.two_pass`) feeds it mixed inputs."""
        if self.input_feeding:
            raise ValueError("forced: a decoder with input feeding steps; it has no "
                             "teacher-forced pass in one call")
        state = self.start(enc) if state is None else state
        h, _ = self.rnn(x, None, state.rnn)  # (B, T, H)
        return self.dropout(self.attend(h, enc, state.keys)[0])  # (B, T, O)

    def features(self, enc: Encoded, tgt_in: Tensor, tf_ratio: float = 1.0,
                 feed: str = "argmax", scope: str = "token", temperature: float = 1.0) -> Tensor:
        """What the output projection takes, ``dropout(o) (B, T, O)``, for ``tgt_in (B, T)``.

        ``tf_ratio``, ``scope``: which previous tokens are gold (see :func:`gold_mask`);
        ``feed``, ``temperature``: what is fed otherwise, the argmax of the previous logits, a
        sample from ``softmax(logits / temperature)`` (``temperature`` 0: the argmax; padding
        is never predicted, as in the searches: a model's free run is its greedy output), or
        (``"uniform"``) a token drawn uniformly from the vocabulary less padding and BOS
        (``tgt_in[:, 0]``). Those logits are computed without a gradient; the loss projects
        all steps at once (:class:`seq2seq.training.objective.Objective`).
        """
        if feed not in ("argmax", "sample", "uniform"):
            raise ValueError(f"feed must be argmax, sample or uniform, got {feed!r}")
        state = self.start(enc)
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        if tf_ratio >= 1.0 and not self.input_feeding:  # one call over the whole target
            return self.forced(enc, emb, state)  # (B, T, O)
        B, T = tgt_in.shape
        gold = gold_mask(B, T, tf_ratio, scope, tgt_in.device) if tf_ratio < 1.0 else None  # (B, T)
        noise = (noise_ids(self.out.out_features, (self.embedding.padding_idx,
                                                   int(tgt_in[0, 0])), tgt_in.device)
                 if feed == "uniform" and tf_ratio < 1.0 else None)  # the ids drawn from
        outs: List[Tensor] = []  # (B, O) per step; dropped out at once when nothing is fed back
        # unbind, not emb[:, t]: the backward of T slices would zero-fill and add T full-size
        # (B, T, E) gradients; unbind's is one stack
        for t, x_t in enumerate(emb.unbind(1)):  # x_t (B, E)
            if t > 0 and tf_ratio < 1.0:
                with torch.no_grad():
                    if noise is not None:  # the noise control: no logits looked at
                        pred = noise[torch.randint(len(noise), (B,), device=tgt_in.device)]
                    else:
                        logits = self.out(outs[-1].detach())  # (B, V)
                        logits[:, self.embedding.padding_idx] = float("-inf")  # as the searches
                        if feed == "sample" and temperature > 0:
                            probs = F.softmax(logits.float() / temperature, -1)  # (B, V)
                            pred = torch.multinomial(probs, 1).squeeze(1)
                        else:
                            pred = self.argmax(logits)  # (B,)
                x_t = torch.where(gold[:, t:t + 1], x_t,
                                  self.dropout(self.embedding(pred)))  # (B, E)
            o, state, _ = self._step(x_t, state, enc)
            outs.append(self.dropout(o) if tf_ratio < 1.0 else o)
        out = torch.stack(outs, dim=1)  # (B, T, O)
        return out if tf_ratio < 1.0 else self.dropout(out)
