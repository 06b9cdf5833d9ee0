"""The encoder-decoder, and the one place where config becomes constructor calls."""

from typing import Optional, Union

from torch import Tensor, nn

from seq2seq.training.loss import TokenLosses, projected_losses

from .decoder import Decoder
from .encoder import Encoder


class Seq2Seq(nn.Module):
    """Encoder-decoder returning logits; the loss is computed outside (see :mod:`seq2seq.training.loss`).

    Inputs: ``src (B, S)``, ``src_len (B,)``, ``tgt_in (B, T)`` (BOS + target, padded),
    ``tf_ratio`` (probability of feeding the gold previous token, see :class:`Decoder`).
    Output: logits ``(B, T, V_tgt)``, or with ``tgt_out`` the training losses.
    """

    engine = "pytorch"  # what runs the model (an exported one: "onnxruntime")

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def from_config(cls, cfg, src_vocab: int, tgt_vocab: int, pad_id: int) -> "Seq2Seq":
        """Build from a :class:`seq2seq.config.ModelConfig`."""
        encoder = Encoder(cfg.cell, cfg.impl, src_vocab, cfg.embedding_dim, cfg.hidden_size,
                          cfg.num_layers, cfg.bidirectional, cfg.dropout,
                          dec_hidden_size=cfg.hidden_size, dec_layers=cfg.num_layers,
                          pad_id=pad_id, manual_backward=cfg.manual_backward)
        decoder = Decoder(cfg.cell, cfg.impl, tgt_vocab, cfg.embedding_dim, cfg.hidden_size,
                          cfg.num_layers, cfg.dropout, encoder.out_size, cfg.attention,
                          cfg.input_feeding, cfg.tie_embeddings, pad_id,
                          manual_backward=cfg.manual_backward)
        return cls(encoder, decoder)

    @staticmethod
    def describe(cfg) -> str:
        """The model of a :class:`seq2seq.config.ModelConfig` in words, for the run's log:
        which layers, and for ``impl: manual`` which backward trains them."""
        backward = ""
        if cfg.impl == "manual":
            backward = (" (hand-written backward, autograd under autocast)"
                        if cfg.manual_backward == "handwritten" else " (autograd backward)")
        return f"{cfg.cell} {cfg.impl}{backward}, attention {cfg.attention}"

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tf_ratio: float = 1.0,
                feed: str = "argmax", scope: str = "token", temperature: float = 1.0,
                tgt_out: Optional[Tensor] = None, label_smoothing: float = 0.0,
                fused_loss: Optional[bool] = None) -> Union[Tensor, TokenLosses]:
        """Logits ``(B, T, V)``; with ``tgt_out (B, T)``, the training losses instead
        (:func:`seq2seq.training.loss.projected_losses`: the output projection and the loss in one pass,
        ``fused_loss`` None: on the CPU; no ``(B, T, V)`` logits are kept)."""
        enc = self.encoder(src, src_len)
        if tgt_out is None:
            return self.decoder(enc, tgt_in, tf_ratio, feed, scope, temperature)  # (B, T, V)
        features = self.decoder.features(enc, tgt_in, tf_ratio, feed, scope, temperature)
        out = self.decoder.out
        return projected_losses(features, out.weight, out.bias, tgt_out,
                                self.decoder.embedding.padding_idx, label_smoothing, fused_loss)
