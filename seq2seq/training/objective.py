"""The training objective: a model's token losses on a batch, as one module (what DDP wraps).

    objective = Objective(model, label_smoothing=0.1)
    losses = objective(src, src_len, tgt_in, tgt_out, tf_ratio)   # TokenLosses
    (losses.objective / losses.n).backward()

The model returns logits; the objective is cross-entropy on the non-padding target tokens, with
label smoothing (:mod:`seq2seq.training.loss`). With the model's fast kernels on the CPU, the
output projection and the loss run fused, block by block
(:mod:`seq2seq.kernels.projected_loss`): the ``(B, T, V)`` logits are never kept, and the
numbers are those of the plain path to float32 rounding.
"""

from typing import Optional

from torch import Tensor, nn

from .loss import TokenLosses, projected_losses


class Objective(nn.Module):
    """The losses of a :class:`seq2seq.model.seq2seq.Seq2Seq` on a batch.

    Args:
        model: the model (a submodule: wrapping the objective in DDP wraps the model).
        label_smoothing: share of the target probability spread over the vocabulary.
        fused: the fused projection and loss; None: where the model's kernels are fast and
            it runs on the CPU; False: the plain path, ``F.linear`` then cross-entropy.

    Inputs: ``src (B, S)``, ``src_len (B,)``, ``tgt_in (B, T)``, ``tgt_out (B, T)`` (target +
    EOS, padded), and the teacher forcing of :meth:`seq2seq.model.seq2seq.Seq2Seq.forward`
    (``tf_ratio``, ``feed``, ``scope``, ``temperature``).
    Output: :class:`seq2seq.training.loss.TokenLosses`, summed over the non-padding tokens.
    """

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0,
                 fused: Optional[bool] = None) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.fused = fused

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor,
                tf_ratio: float = 1.0, feed: str = "argmax", scope: str = "token",
                temperature: float = 1.0) -> TokenLosses:
        features = self.model.features(src, src_len, tgt_in, tf_ratio, feed, scope,
                                       temperature)  # (B, T, O)
        fused = self.fused
        if fused is None:
            fused = self.model.kernels == "fast" and features.device.type == "cpu"
        out = self.model.decoder.out
        return projected_losses(features, out.weight, out.bias, tgt_out,
                                self.model.decoder.embedding.padding_idx, self.label_smoothing,
                                fused)
