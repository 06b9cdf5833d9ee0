"""Two-pass (parallel) scheduled sampling (``teacher_forcing.passes: 2``).

Duckworth, Neelakantan, Goodrich, Kaiser and Bengio (2019), "Parallel scheduled sampling";
Mihaylova and Martins (2019), "Scheduled sampling for transformers"; the soft mix is Goyal,
Dyer and Berg-Kirkpatrick (2017)'s differentiable scheduled sampling. Instead of stepping the
decoder one token at a time to pick what it is fed (:meth:`seq2seq.model.decoder.Decoder.features`
below ratio 1), two teacher-forced passes, each one call of the recurrent layer::

    first   = W_out dropout(o)   over the gold inputs tgt_in          # (B, T, V)
    pred_t  = mix(first[:, t-1])                                      # t >= 1
    x_t     = emb(tgt_in[:, t])  where gold[:, t], else pred_t        # x_0 = emb(BOS) always
    second  = dropout(o)         over dropout(x)                      # (B, T, O): the loss's

``gold`` is :func:`seq2seq.model.decoder.gold_mask` at the schedule's ratio and scope. ``mix``:
``argmax`` embeds the first pass's argmax, ``sample`` a sample from
``softmax(first / temperature)`` (temperature 0: the argmax), ``soft`` the softmax-weighted
average of the target embedding, ``softmax(first / temperature) @ E`` (temperature 0: the
argmax's embedding). ``mix_gradient``: the first pass runs with gradient, which reaches the
model through the soft mix's weights; without it (the default) the first pass runs under
``no_grad`` (for argmax and sample the choice of a token has no gradient either way; the
config rejects ``mix_gradient`` with them). At ratio 1 the first pass is skipped: exactly
teacher forcing.

The second pass sees the first pass's predictions of the gold prefix, not its own: one round
of Duckworth et al.'s passes, whose first they find does most of the good. Only for decoders
without input feeding (``o_{t-1}`` would need the steps; the config says so at load).
"""

import contextlib
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from seq2seq.model.decoder import gold_mask

MIXES = ("argmax", "sample", "soft")


class TwoPass:
    """Two-pass sampling's settings and its features (see the module docstring).

    Args:
        mix: ``argmax`` | ``sample`` | ``soft``, what a position the coin says is not gold is
            fed from the first pass.
        mix_gradient: the gradient flows through the first pass's logits into the soft mix
            (``soft`` only).
    """

    def __init__(self, mix: str = "argmax", mix_gradient: bool = False) -> None:
        if mix not in MIXES:
            raise ValueError(f"mix must be argmax, sample or soft, got {mix!r}")
        if mix_gradient and mix != "soft":
            raise ValueError(f"mix_gradient needs the soft mix: a {mix} token has no gradient")
        self.mix, self.mix_gradient = mix, mix_gradient

    @classmethod
    def of(cls, tf) -> Optional["TwoPass"]:
        """The two passes of a :class:`seq2seq.config.TeacherForcingConfig`; None with
        ``passes: 1`` (the stepping decoder)."""
        return cls(tf.mix, tf.mix_gradient) if tf.passes == 2 else None

    def features(self, model, src: Tensor, src_len: Tensor, tgt_in: Tensor,
                 tf_ratio: float = 1.0, scope: str = "token", temperature: float = 1.0
                 ) -> Tensor:
        """What the output projection takes, ``(B, T, O)``, for ``src (B, S)``,
        ``src_len (B,)``, ``tgt_in (B, T)`` (BOS + target, padded): the second pass's, with the
        gold previous tokens where :func:`gold_mask` (``tf_ratio``, ``scope``) says so.
        ``model``: a :class:`seq2seq.model.seq2seq.Seq2Seq`, plain or fast kernels."""
        enc = model.encoder(src, src_len)
        if tf_ratio >= 1.0:  # every position gold: no first pass, exactly teacher forcing
            return model.decoder.features(enc, tgt_in)
        B, T = tgt_in.shape
        gold = gold_mask(B, T, tf_ratio, scope, tgt_in.device)  # (B, T)
        return self.mixed_features(model.decoder, enc, tgt_in, gold, temperature)[0]

    def mixed_features(self, decoder, enc, tgt_in: Tensor, gold: Tensor,
                       temperature: float = 1.0) -> Tuple[Tensor, Optional[Tensor]]:
        """Both passes for a given ``gold (B, T)`` mask (position 0 is BOS whatever it says):
        the second pass's features ``(B, T, O)`` and the ids it was fed ``(B, T)`` (None for
        the soft mix, which feeds vectors)."""
        grad = contextlib.nullcontext() if self.mix_gradient else torch.no_grad()
        with grad:
            first = decoder.out(decoder.features(enc, tgt_in))  # (B, T, V)
        x, ids = self.mixed_inputs(decoder, first, tgt_in, gold, temperature)  # (B, T, E)
        return decoder.forced(enc, decoder.dropout(x)), ids  # (B, T, O)

    def mixed_inputs(self, decoder, first: Tensor, tgt_in: Tensor, gold: Tensor,
                     temperature: float = 1.0) -> Tuple[Tensor, Optional[Tensor]]:
        """The second pass's inputs before dropout, ``(B, T, E)``, from the first pass's logits
        ``first (B, T, V)``, and the ids they embed ``(B, T)`` (None for the soft mix)."""
        B, T, V = first.shape
        emb = decoder.embedding
        if T == 1:  # BOS alone: nothing to mix
            return emb(tgt_in), tgt_in
        prev = first[:, :-1]  # (B, T-1, V): the predictions of tgt_in[:, 1:]
        keep = torch.cat([gold.new_ones(B, 1), gold[:, 1:]], 1)  # (B, T): BOS always gold
        if self.mix == "soft" and temperature > 0:
            probs = F.softmax(prev.float() / temperature, -1).to(emb.weight.dtype)  # (B, T-1, V)
            soft = probs @ emb.weight  # (B, T-1, V) @ (V, E) -> (B, T-1, E)
            gold_x = emb(tgt_in)  # (B, T, E)
            soft = torch.cat([gold_x[:, :1], soft.to(gold_x.dtype)], 1)  # (B, T, E)
            return torch.where(keep.unsqueeze(-1), gold_x, soft), None
        with torch.no_grad():
            flat = prev.reshape(B * (T - 1), V).clone()  # (B*(T-1), V)
            flat[:, decoder.embedding.padding_idx] = float("-inf")  # never predicted (searches)
            if self.mix == "sample" and temperature > 0:
                probs = F.softmax(flat.float() / temperature, -1)  # (B*(T-1), V)
                pred = torch.multinomial(probs, 1).squeeze(1)  # (B*(T-1),)
            else:  # argmax, or temperature 0
                pred = decoder.argmax(flat)  # (B*(T-1),)
            pred = torch.cat([tgt_in[:, :1], pred.view(B, T - 1)], 1)  # (B, T)
            ids = torch.where(keep, tgt_in, pred)  # (B, T)
        return emb(ids), ids
