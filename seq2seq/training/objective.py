"""The training objective: a model's token losses on a batch, as one module (what DDP wraps).

    objective = Objective(model, label_smoothing=0.1)
    losses = objective(src, src_len, tgt_in, tgt_out, tf_ratio)   # TokenLosses
    (losses.objective / losses.n).backward()

The model returns logits; the objective is cross-entropy on the non-padding target tokens, with
label smoothing (:mod:`seq2seq.training.loss`). With the model's fast kernels on the CPU, the
output projection and the loss run fused, block by block
(:mod:`seq2seq.kernels.projected_loss`): the ``(B, T, V)`` logits are never kept, and the
numbers are those of the plain path to float32 rounding.

With ``train.objective: mrt`` (``risk``, :mod:`seq2seq.training.mrt`), the forward also draws
candidates from the model (under no_grad, inside this module, so that DDP sees every model
call) and the objective becomes, per the loop's division by the target tokens ``n``,

    objective = w * token_loss + (1 - w) * n * mean_B(expected cost)     (w = mrt.mle_weight)

that is, after the loop divides by ``n``: ``w`` times the token cross-entropy per target token
plus ``1 - w`` times the expected cost per sentence (its mean over the batch's sentences).
Under DDP, each process's mean counts in proportion to its target tokens.
"""

import contextlib
from typing import Optional

import torch
from torch import Tensor, nn

from .loss import TokenLosses, projected_losses
from .mrt import MinimumRisk
from .sentence_oracle import SentenceOracle
from .two_pass import TwoPass


class Objective(nn.Module):
    """The losses of a :class:`seq2seq.model.seq2seq.Seq2Seq` on a batch.

    Args:
        model: the model (a submodule: wrapping the objective in DDP wraps the model).
        label_smoothing: share of the target probability spread over the vocabulary.
        fused: the fused projection and loss; None: where the model's kernels are fast and
            it runs on the CPU; False: the plain path, ``F.linear`` then cross-entropy.
        risk: minimum risk training (:class:`seq2seq.training.mrt.MinimumRisk`); None: the
            token losses alone.
        two_pass: two-pass sampling (:class:`seq2seq.training.two_pass.TwoPass`,
            ``teacher_forcing.passes: 2``): the features of its second pass, fed by its ``mix``
            where the coin says not gold (``feed`` is not used); None: the model's own
            (the stepping decoder below ratio 1).
        oracle: Zhang et al.'s sentence-level oracle
            (:class:`seq2seq.training.sentence_oracle.SentenceOracle`,
            ``teacher_forcing.oracle: sentence``): below ratio 1, its tokens are fed where the
            coin says not gold, in one teacher-forced pass (``feed`` is not used).

    Inputs: ``src (B, S)``, ``src_len (B,)``, ``tgt_in (B, T)``, ``tgt_out (B, T)`` (target +
    EOS, padded), and the teacher forcing of :meth:`seq2seq.model.seq2seq.Seq2Seq.forward`
    (``tf_ratio``, ``feed``, ``scope``, ``temperature``).

    Output: :class:`seq2seq.training.loss.TokenLosses`, summed over the non-padding tokens
    (with ``risk``, its ``risk``: the batch's mean expected cost times ``n``).
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0,
                 fused: Optional[bool] = None, risk: Optional[MinimumRisk] = None,
                 two_pass: Optional[TwoPass] = None,
                 oracle: Optional[SentenceOracle] = None) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.fused = fused
        self.risk = risk
        self.two_pass = two_pass
        self.oracle = oracle

    @classmethod
    def of(cls, cfg, model: nn.Module, tok, limit) -> "Objective":
        """The objective of a run's config: ``train.objective`` (``mrt``: with the ``mrt``
        section, the tokenizer and the output limit ``limit`` the samples stop at) and
        ``teacher_forcing.passes`` (2: :class:`TwoPass` with its ``mix``), ``.oracle``
        (``sentence``: :class:`SentenceOracle` with the ``oracle`` section)."""
        risk = MinimumRisk(cfg.mrt, tok, limit) if cfg.train.objective == "mrt" else None
        return cls(model, cfg.train.label_smoothing, risk=risk,
                   two_pass=TwoPass.of(cfg.teacher_forcing),
                   oracle=(SentenceOracle(cfg.oracle, tok)
                           if cfg.teacher_forcing.oracle == "sentence" else None))

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                tf_ratio: float = 1.0, feed: str = "argmax", scope: str = "token",
                temperature: float = 1.0) -> TokenLosses:
        if self.oracle is not None and tf_ratio < 1.0:  # the oracle where the coins say so
            tgt_in, tf_ratio = self.oracle.feed(self.model, src, src_len, tgt_in, tgt_out,
                                                tf_ratio, scope), 1.0
        if self.risk is None:
            return self.token_losses(src, src_len, tgt_in, tgt_out, tf_ratio, feed, scope,
                                     temperature)
        w = self.risk.cfg.mle_weight
        with contextlib.nullcontext() if w else torch.no_grad():  # w = 0: for the log only
            tokens = self.token_losses(src, src_len, tgt_in, tgt_out, tf_ratio, feed, scope,
                                       temperature)
        with torch.no_grad() if w == 1 else contextlib.nullcontext():  # w = 1: logged only
            costs = self.risk(self.model, src, src_len, tgt_out)  # (B,)
        real = (tgt_out != self.model.decoder.embedding.padding_idx).any(1)  # (B,) no ghosts
        risk = (costs * real).sum() * (tokens.n / max(1, int(real.sum())))
        objective = (1 - w) * risk + (w * tokens.objective if w else 0.0)
        return TokenLosses(objective, tokens.nll, tokens.n, float(risk.detach()))

    def token_losses(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                     tf_ratio: float = 1.0, feed: str = "argmax", scope: str = "token",
                     temperature: float = 1.0) -> TokenLosses:
        """The token losses (cross-entropy with label smoothing); the arguments of forward."""
        if self.two_pass is not None:
            features = self.two_pass.features(self.model, src, src_len, tgt_in, tf_ratio,
                                              scope, temperature)  # (B, T, O)
        else:
            features = self.model.features(src, src_len, tgt_in, tf_ratio, feed, scope,
                                           temperature)  # (B, T, O)
        fused = self.fused
        if fused is None:
            fused = self.model.kernels == "fast" and features.device.type == "cpu"
        out = self.model.decoder.out
        return projected_losses(features, out.weight, out.bias, tgt_out,
                                self.model.decoder.embedding.padding_idx, self.label_smoothing,
                                fused)
